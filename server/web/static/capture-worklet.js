// The microphone's AudioWorklet: mono, resampled to the wire rate, cut into PCM16 chunks.
//
// Runs on the audio thread. Each render quantum (128 frames at the context's rate) is mixed to
// mono, resampled, and gathered into chunks of `chunkMs`; every full chunk goes to the main
// thread as an Int16Array (transferred, not copied) with its RMS level for the meter.

import { Resampler, floatToInt16 } from "./resample.js";

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, chunkMs } = options.processorOptions;
    this.resampler = new Resampler(sampleRate, targetRate);
    this.chunk = new Float32Array(Math.round((targetRate * chunkMs) / 1000));
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels.length === 0) return true; // no source connected (yet)
    const mono = channels.length === 1 ? channels[0] : mix(channels);
    this.gather(this.resampler.process(mono));
    return true;
  }

  gather(samples) {
    let offset = 0;
    while (offset < samples.length) {
      const n = Math.min(samples.length - offset, this.chunk.length - this.filled);
      this.chunk.set(samples.subarray(offset, offset + n), this.filled);
      this.filled += n;
      offset += n;
      if (this.filled === this.chunk.length) {
        const pcm = floatToInt16(this.chunk);
        this.port.postMessage({ type: "chunk", pcm, rms: rms(this.chunk) }, [pcm.buffer]);
        this.filled = 0;
      }
    }
  }
}

function mix(channels) {
  const out = new Float32Array(channels[0].length);
  for (const channel of channels) {
    for (let i = 0; i < out.length; i++) out[i] += channel[i] / channels.length;
  }
  return out;
}

function rms(samples) {
  let sum = 0;
  for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
  return Math.sqrt(sum / samples.length);
}

registerProcessor("step-realtime-capture", CaptureProcessor);
