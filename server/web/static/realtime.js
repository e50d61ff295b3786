// The connection speaking the OpenAI Realtime protocol (GA event names) at /v1/realtime: app.js
// speaks it, so events pass through as they are (the socket itself: connection.js).

import { SocketConnection } from "./connection.js";

export { CLOSE_TRY_AGAIN_LATER, ConnectionError } from "./connection.js";

/** The realtime URL next to the page: ws(s)://this-host/v1/realtime. */
export function defaultRealtimeUrl(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/realtime`;
}

export class RealtimeConnection extends SocketConnection {
  // what the page's controls can do in this dialect (app.js disables the rest and says why)
  static serverTakesTurns = false; // the page picks push to talk or a turn detection
  static voiceFixedAtStart = false; // session.update changes it at any time
  static hasSpeechSpeed = true;
  static streamsWhilePaused = false; // a paused microphone sends nothing

  /** The URL of this dialect at the server whose realtime URL is `realtimeUrl`. */
  static urlFor(realtimeUrl) {
    return realtimeUrl;
  }

  receive(event) {
    if (event.type === "error") this.lastError = event.error;
    if (event.type === "session.created") this.started(event.session);
    this.onEvent(event);
  }

  /** Send a client event; returns the event_id it was given. */
  send(event) {
    return this.sendWire(event);
  }
}

/** The session settings the page's controls stand for, as a session.update `session`. */
export function sessionSettings({ voice, speed, effort, transcriptionModel }) {
  const session = {
    type: "realtime",
    audio: {
      input: {
        format: { type: "audio/pcm", rate: 24000 },
        transcription: { model: transcriptionModel },
      },
      output: { format: { type: "audio/pcm", rate: 24000 }, speed },
    },
    include: ["response.reasoning_text"], // reasoning is only sent to clients that ask
  };
  if (voice) session.audio.output.voice = voice;
  if (effort) session.reasoning = { effort };
  return session;
}

/** The turn detection of a mode: push to talk is manual commit (null). */
export function turnDetection(mode) {
  if (mode === "server_vad") return { type: "server_vad" };
  if (mode === "semantic_vad") return { type: "semantic_vad", eagerness: "auto" };
  return null;
}
