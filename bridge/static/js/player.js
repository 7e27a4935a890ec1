// One recording player, shared by the incidents panel and the timeline: a <video> playing a
// range of a source's recording (recording.mp4, seekable), from a chosen moment in it.
import { messageOf, playableUrl, recordingUrl } from "./api.js";
import { byId } from "./dom.js";
import { when } from "./labels.js";

export class Player {
  /**
   * @param {string} videoId
   * @param {string} captionId
   * @param {string} noticeId
   */
  constructor(videoId, captionId, noticeId) {
    this.video = byId(videoId, HTMLVideoElement);
    this.caption = byId(captionId, HTMLElement);
    this.notice = byId(noticeId, HTMLElement);
    this.url = "";
    this.video.addEventListener("error", () => {
      this.say(`This part of the recording cannot be played: ${this.video.error?.message || "no recording covers it"}.`);
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
    this.say("");
    this.caption.textContent = `${caption} · ${when(start)}–${when(end)}`;
    if (this.url.startsWith("blob:")) URL.revokeObjectURL(this.url);
    try {
      this.url = await playableUrl(recordingUrl(sourceId, start, end));
    } catch (error) {
      this.say(`No recording: ${messageOf(error)}`);
      return;
    }
    this.video.hidden = false;
    this.video.src = this.url;
    const offset = Math.max(0, (from.getTime() - start.getTime()) / 1000);
    this.video.addEventListener("loadedmetadata", () => { this.video.currentTime = offset; }, { once: true });
    this.video.play().catch(() => { /* autoplay refused or no recording: the controls remain */ });
  }
}
