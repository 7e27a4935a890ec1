// DOM helpers: elements looked up by id or selector with the type the caller needs (a missing
// or different element is a broken page, said at once rather than as a null later), and `el`,
// which builds an element from its properties and children.

/**
 * The element with this id, checked to be a `type`.
 * @template {Element} T
 * @param {string} id
 * @param {new () => T} type
 * @returns {T}
 */
export function byId(id, type) {
  const node = document.getElementById(id);
  if (node instanceof type) return node;
  throw new Error(`#${id} is missing or not a ${type.name}`);
}

/**
 * The HTML element with this id.
 * @param {string} id
 * @returns {HTMLElement}
 */
export const $ = (id) => byId(id, HTMLElement);

/**
 * The first element under `root` that `selector` matches, checked to be a `type`.
 * @template {Element} T
 * @param {ParentNode} root
 * @param {string} selector
 * @param {new () => T} type
 * @returns {T}
 */
export function find(root, selector, type) {
  const node = root.querySelector(selector);
  if (node instanceof type) return node;
  throw new Error(`${selector} is missing or not a ${type.name}`);
}

/**
 * A new element. Props: "class", "text" (its text), data-*, aria-* and role (attributes), any
 * other is set as the element's property (type, value, id, dateTime...).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, string>} [props]
 * @param {...(Node | string | null)} children null ones are left out
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else Object.assign(node, { [key]: value });
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}
