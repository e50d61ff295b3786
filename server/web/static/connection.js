// What the connections of both dialects share (realtime.js, live.js): the WebSocket, the key as
// a subprotocol, close codes as plain errors, event ids.
//
// A browser cannot set headers on a WebSocket, so a key travels as the subprotocol
// `openai-insecure-api-key.<key>` beside `realtime`; the page only ever puts a short-lived
// client secret there (see server/web/README.md). The server picks `realtime` for either
// dialect's socket, and a browser fails a handshake where it offered subprotocols and none was
// picked, so both dialects offer it.

export const CLOSE_TRY_AGAIN_LATER = 1013; // RFC 6455: the server is at its session limit
const REALTIME_SUBPROTOCOL = "realtime";
const KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key.";
const CLOSE_NORMAL = 1000;

/** Why a connection could not be made or ended: `kind` picks the words (messages.js). */
export class ConnectionError extends Error {
  constructor(kind, { code = null, reason = "", serverError = null } = {}) {
    super(`${kind} (close code ${code}${reason ? `: ${reason}` : ""})`);
    // "full", "refused" (never opened), "not_started" (opened, but the server would not start
    // the session as asked: GPT-Live's session.start), "closed" (ended after starting)
    this.kind = kind;
    this.code = code;
    this.reason = reason;
    this.serverError = serverError; // the last `error` event's error, if any
  }
}

/** A WebSocket session of either dialect. A dialect's class says when the session has started
 * (`started`) and what goes to app.js (`receive`): events in the Realtime vocabulary. */
export class SocketConnection {
  constructor(url, { secret = null, onEvent, onClose }) {
    this.url = url;
    this.secret = secret;
    this.onEvent = onEvent; // server events, as app.js reads them (the Realtime vocabulary)
    this.onClose = onClose; // (ConnectionError) once the socket closes after the start
    this.socket = null;
    this.opened = false; // the session has started
    this.closedByPage = false; // a Disconnect: its close is no loss to report
    this.lastError = null;
    this.nextEventId = 1;
    this.settle = null; // open()'s {resolve, reject} until the session starts
  }

  /** Connect; resolves with the session (Realtime's shape), rejects with ConnectionError. */
  open() {
    const protocols = [REALTIME_SUBPROTOCOL];
    if (this.secret) protocols.push(KEY_SUBPROTOCOL_PREFIX + this.secret);
    return new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
      const socket = new WebSocket(this.url, protocols);
      this.socket = socket;
      socket.onopen = () => this.greet();
      socket.onmessage = (message) => this.receive(JSON.parse(message.data));
      socket.onclose = (close) => this.closed(close);
    });
  }

  /** The socket is open: a dialect that speaks first does so here. */
  greet() {}

  /** A server event; the dialect's class passes on what app.js reads. */
  receive(event) {
    throw new Error(`${this.constructor.name} must say what to do with ${event.type}`);
  }

  /** The session has started: open() resolves with `session`. */
  started(session) {
    if (this.opened) return;
    this.opened = true;
    this.settle.resolve(session);
  }

  /** The server would not start the session: open() rejects, and the socket is closed. */
  notStarted(serverError) {
    this.settle.reject(new ConnectionError("not_started", { serverError }));
    this.close();
  }

  closed(close) {
    const error = this.closeError(close);
    if (this.opened && !this.closedByPage) this.onClose(error);
    else this.settle.reject(error); // a no-op where notStarted rejected already
  }

  closeError(close) {
    const details = { code: close.code, reason: close.reason, serverError: this.lastError };
    if (close.code === CLOSE_TRY_AGAIN_LATER) return new ConnectionError("full", details);
    return new ConnectionError(this.opened ? "closed" : "refused", details);
  }

  /** Send `event` as it is, with an event_id; returns the id. */
  sendWire(event) {
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
    this.closedByPage = true;
    if (this.socket) this.socket.close(CLOSE_NORMAL, "closed by the page");
  }
}
