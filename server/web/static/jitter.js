// The jitter buffer between the network and the sound card: reply audio (already at the output
// rate) goes in as it arrives, the audio thread pulls one render quantum at a time.
//
// Playback of an item starts once PREBUFFER_MS are queued (or the item's audio has all
// arrived), so that the gaps between network messages do not become gaps in the sound. When the
// queue runs dry before the item's end, that is an underrun: silence is played and the buffer
// fills to PREBUFFER_MS again. Every item's played frames are counted, so that a barge-in can
// tell the server how many milliseconds the listener really heard.

// Audio queued before playback starts: the server sends speech faster than real time, so this
// only has to cover the spacing of its messages and the main thread's pauses (garbage
// collection, layout), typically well under 50 ms.
export const PREBUFFER_MS = 80;

export class JitterBuffer {
  constructor(sampleRate, prebufferMs = PREBUFFER_MS) {
    if (!Number.isFinite(sampleRate) || sampleRate <= 0) {
      throw new RangeError(`sampleRate must be a positive number of Hz, got ${sampleRate}`);
    }
    this.sampleRate = sampleRate;
    this.prebufferFrames = Math.round((sampleRate * prebufferMs) / 1000);
    this.queue = []; // {itemId, data: Float32Array, offset}
    this.queuedFrames = 0;
    this.playing = false;
    this.current = null; // the item playing, or the last one played
    this.currentFinished = true;
    this.ended = new Set(); // items whose audio has all arrived
    this.dropped = new Set(); // items stopped by the listener: later audio is ignored
    this.playedFrames = new Map(); // itemId -> frames played
    this.underruns = 0;
  }

  /** Queue `samples` (Float32Array at the output rate) of `itemId`. */
  push(itemId, samples) {
    if (this.dropped.has(itemId) || samples.length === 0) return;
    this.queue.push({ itemId, data: samples, offset: 0 });
    this.queuedFrames += samples.length;
  }

  /** All of `itemId`'s audio has arrived: its tail plays without waiting to prebuffer. */
  end(itemId) {
    this.ended.add(itemId);
  }

  get bufferedMs() {
    return (this.queuedFrames * 1000) / this.sampleRate;
  }

  playedMs(itemId) {
    return ((this.playedFrames.get(itemId) ?? 0) * 1000) / this.sampleRate;
  }

  /** Fill `out` (Float32Array) with the next frames; returns what happened, as events. */
  pull(out) {
    const events = [];
    out.fill(0);
    let written = 0;
    while (written < out.length) {
      if (!this.playing) {
        if (this.queue.length === 0) break;
        const head = this.queue[0].itemId;
        if (this.queuedFrames < this.prebufferFrames && !this.ended.has(head)) break;
        this.playing = true;
      }
      if (this.queue.length === 0) {
        this.playing = false;
        if (!this.currentFinished && !this.ended.has(this.current)) {
          this.underruns += 1;
          events.push({ type: "underrun", itemId: this.current });
        }
        break;
      }
      const chunk = this.queue[0];
      if (chunk.itemId !== this.current || this.currentFinished) {
        if (chunk.itemId !== this.current) this.finishCurrent(events);
        this.current = chunk.itemId;
        this.currentFinished = false;
        events.push({ type: "started", itemId: chunk.itemId });
      }
      const n = Math.min(out.length - written, chunk.data.length - chunk.offset);
      out.set(chunk.data.subarray(chunk.offset, chunk.offset + n), written);
      chunk.offset += n;
      written += n;
      this.queuedFrames -= n;
      this.playedFrames.set(chunk.itemId, (this.playedFrames.get(chunk.itemId) ?? 0) + n);
      if (chunk.offset === chunk.data.length) this.queue.shift();
    }
    const more = this.queue.some((chunk) => chunk.itemId === this.current);
    if (!this.currentFinished && this.ended.has(this.current) && !more) {
      this.finishCurrent(events);
    }
    return events;
  }

  /** Stop at once and drop everything queued. Returns {itemId: playedMs} for every item that
   * had not finished playing (the one playing and those waiting), for truncation. */
  stop() {
    const cut = {};
    if (this.current !== null && !this.currentFinished) {
      cut[this.current] = this.playedMs(this.current);
    }
    for (const chunk of this.queue) {
      if (!(chunk.itemId in cut)) cut[chunk.itemId] = this.playedMs(chunk.itemId);
    }
    for (const itemId of Object.keys(cut)) this.dropped.add(itemId);
    this.queue = [];
    this.queuedFrames = 0;
    this.playing = false;
    this.currentFinished = true;
    return cut;
  }

  finishCurrent(events) {
    if (this.current !== null && !this.currentFinished) {
      events.push({
        type: "finished",
        itemId: this.current,
        playedMs: this.playedMs(this.current),
      });
    }
    this.currentFinished = true;
  }
}
