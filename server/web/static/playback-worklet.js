// The speaker's AudioWorklet: reply audio at the wire rate in, through the jitter buffer, out.
//
// Messages from the main thread: {type: "audio", itemId, pcm: Int16Array} (wire rate),
// {type: "end", itemId} (no more audio for the item), {type: "stop", requestId} (barge-in:
// silence from the next render quantum on, and the milliseconds played of each unfinished
// item come back as {type: "stopped", requestId, played}). It reports {type: "started" |
// "finished" | "underrun", itemId} and, every PROGRESS_MS while playing, {type: "progress"}.

import { JitterBuffer } from "./jitter.js";
import { Resampler, int16ToFloat } from "./resample.js";

const PROGRESS_MS = 100; // how often the page's "played" figures are refreshed

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { sourceRate, prebufferMs } = options.processorOptions;
    this.sourceRate = sourceRate;
    this.jitter = new JitterBuffer(sampleRate, prebufferMs);
    this.resamplers = new Map(); // itemId -> Resampler: one filter state per item
    this.sinceProgress = 0;
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  onMessage(message) {
    if (message.type === "audio") {
      this.jitter.push(message.itemId, this.resample(message.itemId, int16ToFloat(message.pcm)));
    } else if (message.type === "end") {
      const resampler = this.resamplers.get(message.itemId);
      if (resampler) this.jitter.push(message.itemId, resampler.flush());
      this.resamplers.delete(message.itemId);
      this.jitter.end(message.itemId);
    } else if (message.type === "stop") {
      const played = this.jitter.stop();
      this.resamplers.clear();
      this.port.postMessage({ type: "stopped", requestId: message.requestId, played });
    }
  }

  resample(itemId, samples) {
    if (this.sourceRate === sampleRate) return samples;
    let resampler = this.resamplers.get(itemId);
    if (!resampler) {
      resampler = new Resampler(this.sourceRate, sampleRate);
      this.resamplers.set(itemId, resampler);
    }
    return resampler.process(samples);
  }

  process(inputs, outputs) {
    const output = outputs[0];
    const events = this.jitter.pull(output[0]);
    for (let c = 1; c < output.length; c++) output[c].set(output[0]);
    for (const event of events) this.port.postMessage(event);
    this.sinceProgress += (output[0].length * 1000) / sampleRate;
    if (this.sinceProgress >= PROGRESS_MS) {
      this.sinceProgress = 0;
      const { current } = this.jitter;
      if (current !== null) {
        this.port.postMessage({
          type: "progress",
          itemId: current,
          playedMs: this.jitter.playedMs(current),
          bufferedMs: this.jitter.bufferedMs,
          underruns: this.jitter.underruns,
        });
      }
    }
    return true;
  }
}

registerProcessor("step-realtime-playback", PlaybackProcessor);
