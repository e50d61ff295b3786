// The connection speaking GPT-Live at /v1/live/sessions (the server's docs/live.md), presented
// to app.js as the Realtime one is: app.js speaks Realtime to it, and a translator turns that
// into GPT-Live and GPT-Live's server events back into the Realtime events app.js reads.
//
// GPT-Live's server owns turn-taking and interruption: no turn detection to choose, no commit or
// response.create for speech, no truncate (the server cuts a reply spoken over itself). Its wire
// names no responses and has no speech events, so the translator marks a reply's bounds itself:
// a reply begins with its first reasoning, audio or transcript, and ends at the
// session.usage.updated that follows every reply (after all of its audio: the server's outbox
// keeps that order). The user's turn that it answers is shown there too, the end of its speech
// taken from the page's own microphone level; when the server closed the turn is not told, so
// the first-packet latency is shown whole, not split.
//
// The session's backend is a `responses` delegation to the served model (as the Python client's
// `backend_delegation`): that is where GPT-Live sets the reasoning effort, and with
// `reasoning.summary` the model's reasoning comes to the page (wrapped in `response.event`).

import { WIRE_RATE } from "./audio.js";
import { SocketConnection } from "./connection.js";

const LIVE_PATH = "/v1/live/sessions";
const BYTES_PER_SAMPLE = 2; // PCM16
const MAX_USER_TURNS = 64; // turns whose input transcript may still come
const SHOW_REASONING = { summary: "auto" }; // any summary: the server sends the raw reasoning

/** The GPT-Live URL of the server at `realtimeUrl` (its /v1/realtime becomes /v1/live/sessions,
 * under any path prefix a proxy adds). */
export function liveUrlFor(realtimeUrl) {
  const url = new URL(realtimeUrl);
  url.search = ""; // /v1/realtime's query (?model=) is not GPT-Live's: session.start names it
  url.pathname = /\/v1\/realtime\/?$/.test(url.pathname)
    ? url.pathname.replace(/\/v1\/realtime\/?$/, LIVE_PATH)
    : LIVE_PATH;
  return url.toString();
}

/** `session.start`: what GPT-Live fixes for the whole session. */
export function liveStart({ model, voice }) {
  const session = {
    model,
    audio: { format: { type: "audio/pcm", rate: WIRE_RATE } },
    delegation: { type: "responses", responses: { model, reasoning: SHOW_REASONING } },
  };
  if (voice) session.audio.output = { voice };
  return { type: "session.start", session };
}

export class LiveConnection extends SocketConnection {
  // what the page's controls can do in this dialect (app.js disables the rest and says why)
  static serverTakesTurns = true;
  static voiceFixedAtStart = true;
  static hasSpeechSpeed = false;
  // the session's timeline is the input audio: a paused microphone sends silence
  static streamsWhilePaused = true;

  static urlFor(realtimeUrl) {
    return liveUrlFor(realtimeUrl);
  }

  constructor(url, { model, voice, ...options }) {
    super(url, options);
    this.start = liveStart({ model: model || "default", voice });
    this.startEventId = null;
    this.translator = new LiveTranslator();
  }

  greet() {
    this.startEventId = this.sendWire(this.start);
  }

  receive(event) {
    if (event.type === "error") {
      this.lastError = event.error;
      if (!this.opened && event.error.client_event_id === this.startEventId) {
        this.notStarted(event.error);
        return;
      }
    }
    if (event.type === "session.started") this.started(sessionView(event.session));
    for (const translated of this.translator.fromServer(event)) this.onEvent(translated);
  }

  /** Send a Realtime client event as GPT-Live; returns its event_id (null: nothing to send). */
  send(event) {
    const wire = this.translator.toServer(event);
    return wire ? this.sendWire(wire) : null;
  }

  /** Open once the session has started: GPT-Live refuses audio before. */
  get isOpen() {
    return this.opened && super.isOpen;
  }
}

/** The started session as app.js reads a Realtime one. GPT-Live's turn detection is the
 * server's own and unnamed, so app.js takes the end of speech from the microphone level. */
function sessionView(session) {
  return {
    id: session.id,
    model: session.model,
    audio: {
      input: { turn_detection: { type: "server" } },
      output: { voice: session.audio?.output?.voice ?? null },
    },
  };
}

/** Milliseconds of PCM16 at the wire rate in `base64`. */
function base64Ms(base64) {
  const padding = base64.endsWith("==") ? 2 : base64.endsWith("=") ? 1 : 0;
  const bytes = (base64.length * 3) / 4 - padding;
  return (bytes / BYTES_PER_SAMPLE / WIRE_RATE) * 1000;
}

/** Realtime client events to GPT-Live, and GPT-Live server events to Realtime ones, with the
 * replies' bounds and ids that GPT-Live's wire does not carry. No I/O: tested on its own. */
export class LiveTranslator {
  constructor() {
    this.sentMs = 0; // the session timeline: input audio sent
    this.reply = null; // the reply being given: {responseId, itemId, userItemId, text, spoke}
    this.userTurns = []; // [{itemId, answeredAtMs}]: where each answered turn's reply began
    this.nextId = 1;
  }

  /** The GPT-Live event for app.js's Realtime client event; null where there is none to send. */
  toServer(event) {
    switch (event.type) {
      case "input_audio_buffer.append":
        this.sentMs += base64Ms(event.audio);
        return { type: "session.input_audio.append", audio: event.audio };
      case "session.update":
        return this.backendUpdate(event.session);
      case "conversation.item.truncate":
        return null; // the server cut the reply itself, to what could have played
      default:
        throw new Error(`${event.type} has no GPT-Live equivalent: the page must not send it`);
    }
  }

  /** Of the page's settings, only the reasoning effort may change after the start (the voice
   * is fixed, transcription is always on, and there is no speech speed). */
  backendUpdate(settings) {
    const effort = settings.reasoning?.effort;
    const reasoning = effort ? { ...SHOW_REASONING, effort } : SHOW_REASONING;
    const delegation = { type: "responses", responses: { reasoning } };
    return { type: "session.update", session: { delegation } };
  }

  /** The Realtime events app.js reads for a GPT-Live server event (none for most). */
  fromServer(event) {
    switch (event.type) {
      case "session.output_audio.delta":
        return this.voice("response.output_audio.delta", { delta: event.delta });
      case "session.output_transcript.delta":
        if (this.reply) this.reply.text += event.delta;
        return this.voice("response.output_audio_transcript.delta", { delta: event.delta });
      case "response.event":
        return this.backendEvent(event.event);
      case "session.input_transcript.delta":
        return this.userTranscript(event);
      case "session.usage.updated":
        return this.endReply();
      case "error": {
        // app.js matches an error to its update by event_id: GPT-Live's client_event_id
        const error = { ...event.error, event_id: event.error.client_event_id };
        return [{ type: "error", error }];
      }
      default:
        return [];
    }
  }

  voice(type, fields) {
    const opened = this.openReply();
    this.reply.spoke = true;
    const { responseId, itemId } = this.reply;
    return [...opened, { type, response_id: responseId, item_id: itemId, ...fields }];
  }

  /** The backend's work: only its reasoning is shown (the spoken answer is the voice's). */
  backendEvent(wrapped) {
    if (wrapped.type === "response.reasoning_text.delta") {
      const opened = this.openReply();
      const delta = { response_id: this.reply.responseId, delta: wrapped.delta };
      return [...opened, { type: "response.reasoning_text.delta", ...delta }];
    }
    if (wrapped.type === "response.reasoning_text.done" && this.reply) {
      const done = { response_id: this.reply.responseId, text: wrapped.text };
      return [{ type: "response.reasoning_text.done", ...done }];
    }
    return [];
  }

  /** A new reply, and the user turn it answers: the events app.js reads for them. */
  openReply() {
    if (this.reply) return [];
    const n = this.nextId++;
    const reply = { responseId: `resp_live_${n}`, itemId: `item_live_${n}`, text: "" };
    reply.userItemId = `item_live_user_${n}`;
    reply.spoke = false;
    this.reply = reply;
    this.userTurns.push({ itemId: reply.userItemId, answeredAtMs: this.sentMs });
    if (this.userTurns.length > MAX_USER_TURNS) this.userTurns.shift();
    const user = { item_id: reply.userItemId };
    return [
      { type: "input_audio_buffer.speech_started", ...user },
      // the speech ended before now: app.js finds where from the microphone level
      { type: "input_audio_buffer.speech_stopped", ...user, audio_end_ms: this.sentMs },
      // the moment the server closed the turn is not told: the latency is not split
      { type: "input_audio_buffer.committed", ...user, commit_unseen: true },
      { type: "response.created", response: { id: reply.responseId, status: "in_progress" } },
      {
        type: "response.output_item.added",
        response_id: reply.responseId,
        item: { id: reply.itemId, type: "message", role: "assistant" },
      },
    ];
  }

  /** session.usage.updated follows every reply. One that never spoke was withdrawn (the user
   * went on speaking): it leaves the page with its turn, as a merge does in Realtime. */
  endReply() {
    const reply = this.reply;
    if (!reply) return [];
    this.reply = null;
    const ids = { response_id: reply.responseId, item_id: reply.itemId };
    if (!reply.spoke) {
      this.userTurns = this.userTurns.filter((turn) => turn.itemId !== reply.userItemId);
      return [
        { type: "conversation.item.deleted", item_id: reply.userItemId },
        { type: "conversation.item.deleted", item_id: reply.itemId },
        { type: "response.done", response: { id: reply.responseId, status: "cancelled" } },
      ];
    }
    // GPT-Live does not tell a finished reply from one cut by a barge-in; a cut one's
    // transcript holds only what went out
    return [
      { type: "response.output_audio.done", ...ids },
      { type: "response.output_audio_transcript.done", ...ids, transcript: reply.text },
      { type: "response.done", response: { id: reply.responseId, status: "completed" } },
    ];
  }

  /** The user's words, for the turn whose span (on the timeline) ended before its reply began:
   * the first such turn, since a reply begins only after the speech it answers. */
  userTranscript(event) {
    const turn = this.userTurns.find((candidate) => candidate.answeredAtMs >= event.end_ms);
    if (!turn) return [];
    const delta = { item_id: turn.itemId, content_index: 0, delta: event.delta };
    return [{ type: "conversation.item.input_audio_transcription.delta", ...delta }];
  }
}
