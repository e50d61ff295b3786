// The page's audio: the microphone through the capture worklet, the reply through the playback
// worklet, both on one AudioContext at the device's own rate (the worklets resample; Firefox
// cannot connect a microphone to a context of another rate).

export const WIRE_RATE = 24000; // the session's audio/pcm rate, both directions
export const APPEND_MS = 20; // one input_audio_buffer.append per 20 ms, as a microphone would
const PLAYBACK_PREBUFFER_MS = 80; // see jitter.js
const STOP_REPLY_TIMEOUT_MS = 500; // the audio thread answers a stop within one quantum

/** Browser features the page needs that are missing here, in plain words. */
export function missingFeatures() {
  const missing = [];
  if (!window.isSecureContext) {
    missing.push("a secure page (https://, or http://localhost / 127.0.0.1) for the microphone");
  }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    missing.push("microphone access (navigator.mediaDevices.getUserMedia)");
  }
  if (typeof AudioWorkletNode === "undefined") missing.push("AudioWorklet (Web Audio)");
  if (typeof WebSocket === "undefined") missing.push("WebSocket");
  return missing;
}

export class AudioEngine {
  constructor({ onChunk, onPlayback }) {
    this.onChunk = onChunk; // (Int16Array pcm, rms) per APPEND_MS of microphone audio
    this.onPlayback = onPlayback; // playback worklet events (started, finished, progress, ...)
    this.context = null;
    this.stream = null;
    this.rendered = new Map(); // itemId -> ms the audio thread has played (its last report)
    this.stopRequests = new Map();
    this.nextRequestId = 1;
  }

  /** Create the context and load both worklets; call from a click (autoplay rules). */
  async start() {
    this.context = new AudioContext({ latencyHint: "interactive" });
    await this.context.resume();
    const worklets = ["capture-worklet.js", "playback-worklet.js"];
    for (const name of worklets) {
      await this.context.audioWorklet.addModule(new URL(name, import.meta.url));
    }
    this.player = new AudioWorkletNode(this.context, "step-realtime-playback", {
      numberOfInputs: 0,
      outputChannelCount: [1],
      processorOptions: { sourceRate: WIRE_RATE, prebufferMs: PLAYBACK_PREBUFFER_MS },
    });
    this.player.port.onmessage = (event) => this.onPlayerMessage(event.data);
    this.player.connect(this.context.destination);
  }

  /** Ask for the microphone and start capturing; rejects with the browser's error. */
  async openMicrophone() {
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        echoCancellation: true, // hands-free: the reply must not be heard as the user
        noiseSuppression: true,
        autoGainControl: true,
      },
    });
    const source = this.context.createMediaStreamSource(this.stream);
    this.capture = new AudioWorkletNode(this.context, "step-realtime-capture", {
      numberOfOutputs: 0,
      processorOptions: { targetRate: WIRE_RATE, chunkMs: APPEND_MS },
    });
    this.capture.port.onmessage = (event) => {
      if (event.data.type === "chunk") this.onChunk(event.data.pcm, event.data.rms);
    };
    source.connect(this.capture);
  }

  /** Queue reply audio (Int16Array at WIRE_RATE) of `itemId`. */
  play(itemId, pcm) {
    this.player.port.postMessage({ type: "audio", itemId, pcm }, [pcm.buffer]);
  }

  /** No more audio will come for `itemId`. */
  endItem(itemId) {
    this.player.port.postMessage({ type: "end", itemId });
  }

  /** Stop playback at once; resolves to {itemId: ms really played} of unfinished items. */
  stop() {
    const requestId = this.nextRequestId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.stopRequests.delete(requestId);
        reject(new Error("the audio thread did not answer the stop request"));
      }, STOP_REPLY_TIMEOUT_MS);
      this.stopRequests.set(requestId, (played) => {
        clearTimeout(timer);
        resolve(this.heard(played));
      });
      this.player.port.postMessage({ type: "stop", requestId });
    });
  }

  /** Frames rendered minus those still on their way to the speaker (the output latency). */
  heard(played) {
    const latencyMs = ((this.context.outputLatency || 0) + (this.context.baseLatency || 0)) * 1000;
    const heard = {};
    for (const [itemId, ms] of Object.entries(played)) heard[itemId] = Math.max(0, ms - latencyMs);
    return heard;
  }

  onPlayerMessage(message) {
    if (message.playedMs !== undefined) this.rendered.set(message.itemId, message.playedMs);
    if (message.type === "stopped") {
      for (const [itemId, ms] of Object.entries(message.played)) this.rendered.set(itemId, ms);
      const resolve = this.stopRequests.get(message.requestId);
      this.stopRequests.delete(message.requestId);
      if (resolve) resolve(message.played);
      return;
    }
    this.onPlayback(message);
  }

  async close() {
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    if (this.context) await this.context.close();
    this.stream = null;
    this.context = null;
  }
}

/** PCM16 little-endian as base64, for input_audio_buffer.append. */
export function pcmToBase64(pcm) {
  const bytes = new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  let binary = "";
  const step = 0x8000; // String.fromCharCode takes its arguments on the stack
  for (let i = 0; i < bytes.length; i += step) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
  }
  return btoa(binary);
}

/** base64 PCM16 little-endian (an audio delta) as an Int16Array. */
export function base64ToPcm(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length - (binary.length % 2));
  for (let i = 0; i < bytes.length; i++) bytes[i] = binary.charCodeAt(i);
  return new Int16Array(bytes.buffer);
}
