// One recording player, shared by the incidents panel and the timeline: a <video> playing a
// range of a source's recording (recording.mp4, which the bridge serves with range requests, so
// the player seeks without loading it all), from a chosen moment in it.
//
// The file starts at the keyframe at or before the range's start, which the bridge says in
// X-Recording-Start; its first byte is asked for first, to learn that (and, when nothing is
// recorded then, the bridge's reason) before the <video> is given the URL. The detector's boxes
// are drawn over the video from the detections stored with the recording (boxes.js).
import { messageOf, playableUrl, recordedDetections, recordingUrl } from "./api.js";
import { BoxOverlay } from "./boxes.js";
import { byId } from "./dom.js";
import { when } from "./labels.js";
import { authHeaders, errorText } from "./net.js";

export class Player {
  /**
   * @param {string} videoId
   * @param {string} captionId
   * @param {string} noticeId
   * @param {string} boxesId the canvas over the video
   */
  constructor(videoId, captionId, noticeId, boxesId) {
    this.video = byId(videoId, HTMLVideoElement);
    this.boxes = new BoxOverlay(this.video, byId(boxesId, HTMLCanvasElement));
    this.caption = byId(captionId, HTMLElement);
    this.notice = byId(noticeId, HTMLElement);
    this.url = "";
    this.asked = 0; // the latest play() wins over slower earlier ones
    this.video.addEventListener("error", () => {
      if (!this.video.getAttribute("src")) return;
      this.say(`This part of the recording cannot be played (${this.video.error?.message || "unreadable"}).`);
    });
  }

  /** @param {string} text */
  say(text) {
    this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  /**
   * Play `sourceId`'s recording from `start` to `end`, from `from` on.
   * @param {string} sourceId
   * @param {Date} start
   * @param {Date} end
   * @param {Date} from
   * @param {string} caption
   */
  async play(sourceId, start, end, from, caption) {
    const asked = ++this.asked;
    this.say("");
    this.caption.textContent = `${caption} · ${when(start)}–${when(end)}`;
    const url = recordingUrl(sourceId, start, end);
    let begins = start;
    let src = "";
    try {
      const probe = await fetch(url, { headers: { ...authHeaders(), Range: "bytes=0-0" } });
      if (!probe.ok) throw new Error(await errorText(probe));
      const said = Date.parse(probe.headers.get("X-Recording-Start") || "");
      if (Number.isFinite(said)) begins = new Date(said);
      src = await playableUrl(url);
    } catch (error) {
      if (asked !== this.asked) return;
      this.stop();
      this.say(`No recording to play: ${messageOf(error)}`);
      return;
    }
    if (asked !== this.asked) return;
    this.stop();
    this.url = src;
    this.video.hidden = false;
    this.video.src = src;
    const offset = Math.max(0, (from.getTime() - begins.getTime()) / 1000);
    this.video.addEventListener("loadedmetadata", () => { this.video.currentTime = offset; }, { once: true });
    this.video.play().catch(() => { /* autoplay refused: the controls remain */ });
    try {
      const found = await recordedDetections(sourceId, begins, end);
      if (asked === this.asked) this.boxes.show(found.frames, begins);
    } catch {
      // No boxes (an older detector, a range past its limit): the video plays without them.
    }
  }

  stop() {
    this.boxes.clear();
    this.video.pause();
    this.video.removeAttribute("src");
    this.video.hidden = true;
    if (this.url.startsWith("blob:")) URL.revokeObjectURL(this.url);
    this.url = "";
  }
}
