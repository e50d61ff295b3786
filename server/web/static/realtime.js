// The WebSocket to the server, speaking the OpenAI Realtime protocol (GA event names).
//
// A browser cannot set headers on a WebSocket, so a key travels as the subprotocol
// `openai-insecure-api-key.<key>` beside `realtime`; the page only ever puts a short-lived
// client secret there (see server/web/README.md).

export const CLOSE_TRY_AGAIN_LATER = 1013; // RFC 6455: the server is at its session limit
const REALTIME_SUBPROTOCOL = "realtime";
const KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key.";

/** Why a connection could not be made or ended: `kind` picks the words (messages.js). */
export class ConnectionError extends Error {
  constructor(kind, { code = null, reason = "", serverError = null } = {}) {
    super(`${kind} (close code ${code}${reason ? `: ${reason}` : ""})`);
    this.kind = kind; // "full", "refused" (never opened), "closed" (ended after opening)
    this.code = code;
    this.reason = reason;
    this.serverError = serverError; // the last `error` event's error, if any
  }
}

/** The realtime URL next to the page: ws(s)://this-host/v1/realtime. */
export function defaultRealtimeUrl(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/realtime`;
}

export class RealtimeConnection {
  constructor(url, { secret = null, onEvent, onClose }) {
    this.url = url;
    this.secret = secret;
    this.onEvent = onEvent; // every server event, parsed
    this.onClose = onClose; // (ConnectionError) once the socket closes after session.created
    this.socket = null;
    this.opened = false;
    this.lastError = null;
    this.nextEventId = 1;
  }

  /** Connect; resolves with the session of `session.created`, rejects with ConnectionError. */
  open() {
    const protocols = [REALTIME_SUBPROTOCOL];
    if (this.secret) protocols.push(KEY_SUBPROTOCOL_PREFIX + this.secret);
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url, protocols);
      this.socket = socket;
      socket.onmessage = (message) => {
        const event = JSON.parse(message.data);
        if (event.type === "error") this.lastError = event.error;
        if (event.type === "session.created" && !this.opened) {
          this.opened = true;
          resolve(event.session);
        }
        this.onEvent(event);
      };
      socket.onclose = (close) => {
        const error = this.closeError(close);
        if (this.opened) this.onClose(error);
        else reject(error);
      };
    });
  }

  closeError(close) {
    const details = { code: close.code, reason: close.reason, serverError: this.lastError };
    if (close.code === CLOSE_TRY_AGAIN_LATER) return new ConnectionError("full", details);
    return new ConnectionError(this.opened ? "closed" : "refused", details);
  }

  /** Send a client event; returns the event_id it was given. */
  send(event) {
    const eventId = `evt_page_${this.nextEventId++}`;
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ event_id: eventId, ...event }));
    }
    return eventId;
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  close() {
    if (this.socket) this.socket.close(1000, "closed by the page");
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
