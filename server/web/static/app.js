// The page: controls, the conversation as it streams, barge-in, latency.
//
// Turn taking: push to talk sends audio only while Talk is held, then commits and asks for a
// response (turn_detection null); hands-free streams all the time and the server's turn
// detection decides (server_vad or semantic_vad). Speech over a reply stops its playback at once
// and truncates the assistant's item to the milliseconds really played.
//
// Dialects: the page speaks OpenAI Realtime (realtime.js) or GPT-Live (live.js), as the user
// chooses before connecting. Both connections take and give Realtime events, so this file has
// one code path; a connection's class says which controls its dialect has (GPT-Live: the
// server takes the turns, the voice is fixed at the start, no speech speed), and the page
// disables the others, saying why.

import {
  APPEND_MS,
  AudioEngine,
  WIRE_RATE,
  base64ToPcm,
  missingFeatures,
  pcmToBase64,
} from "./audio.js";
import { LatencyHistogram, SendLog, formatSeconds, splitLatency } from "./latency.js";
import { LiveConnection } from "./live.js";
import {
  WHY_DISABLED,
  explainConnectionError,
  explainMicrophoneError,
  explainSecretError,
  explainServerError,
} from "./messages.js";
import {
  RealtimeConnection,
  defaultRealtimeUrl,
  sessionSettings,
  turnDetection,
} from "./realtime.js";

const CONFIG_URL = new URL("config.json", import.meta.url); // served beside this module
const CLIENT_SECRET_PREFIX = "ek_";
const METER_FULL_SCALE_RMS = 0.3; // speech near the microphone peaks around here
const DEFAULT_TARGET_SECONDS = 0.92;
const MIN_PUSH_MS = 100; // a shorter press of Talk is a tap, not speech: nothing is sent
const CONNECTIONS = { realtime: RealtimeConnection, live: LiveConnection };
const SERVER_MODE = "server"; // the server's own turn-taking (GPT-Live): hands-free

const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

class Page {
  constructor(config) {
    this.config = config;
    this.Connection = RealtimeConnection; // the chosen dialect's
    this.connection = null;
    this.audio = null;
    this.session = null;
    this.sendLog = new SendLog();
    this.talking = false; // push to talk: Talk is held
    this.sentWhileTalking = 0;
    this.micOn = true; // hands-free: listening (Talk pauses it)
    this.mode = "push";
    this.acceptedMode = "push";
    this.pendingUpdates = new Map(); // event_id -> what the update was for
    this.userTurns = new Map(); // item_id -> {node, speechEndAt, committedAt}
    this.pushTurn = null; // the push-to-talk turn being spoken (no item id yet)
    this.awaitingResponse = null; // the committed user turn the next response answers
    this.turns = new Map(); // response_id -> assistant turn
    this.byItem = new Map(); // item_id -> assistant turn
    this.active = null; // the latest assistant turn
    this.histogram = new LatencyHistogram(
      $("histogram"),
      $("latency-summary"),
      config.first_audio_target_seconds ?? DEFAULT_TARGET_SECONDS,
    );
    this.fillControls();
    this.bindControls();
    this.setDialect($("dialect").value); // a reload may have kept the last choice
  }

  // --- controls -------------------------------------------------------------------------

  fillControls() {
    const { config } = this;
    $("model").textContent = config.model || "";
    const effort = $("effort");
    effort.append(new Option("server default", ""));
    for (const name of config.efforts || []) effort.append(new Option(name, name));
    effort.value = config.default_effort || "";
    const voice = $("voice");
    for (const name of config.voices || []) voice.append(new Option(name, name));
    voice.value = config.default_voice || (config.voices || [])[0] || "";
    $("secret-row").hidden = !(config.auth_required && !config.client_secret_url);
  }

  bindControls() {
    $("connect").addEventListener("click", () =>
      this.connection ? this.disconnect() : this.connect(),
    );
    const talk = $("talk");
    talk.addEventListener("pointerdown", (event) => {
      if (this.mode === "push") {
        talk.setPointerCapture(event.pointerId);
        this.startTalking();
      } else {
        this.micOn = !this.micOn;
        this.showTalkButton();
      }
    });
    talk.addEventListener("pointerup", () => this.mode === "push" && this.stopTalking());
    talk.addEventListener("pointercancel", () => this.mode === "push" && this.stopTalking());
    const typing = (event) => ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName);
    document.addEventListener("keydown", (event) => {
      if (event.code !== "Space" || event.repeat || typing(event) || this.mode !== "push") return;
      event.preventDefault();
      this.startTalking();
    });
    document.addEventListener("keyup", (event) => {
      if (event.code !== "Space" || typing(event) || this.mode !== "push") return;
      event.preventDefault();
      this.stopTalking();
    });
    for (const radio of document.querySelectorAll('input[name="mode"]')) {
      radio.addEventListener("change", () => this.setMode(radio.value));
    }
    for (const id of ["effort", "voice", "speed"]) {
      $(id).addEventListener("change", () => this.updateSession());
    }
    $("dialect").addEventListener("change", () => this.setDialect($("dialect").value));
  }

  setDialect(dialect) {
    this.Connection = CONNECTIONS[dialect];
    const checked = document.querySelector('input[name="mode"]:checked');
    this.mode = this.Connection.serverTakesTurns ? SERVER_MODE : checked.value;
    this.showDialect();
    this.showTalkButton();
  }

  /** Disable what the chosen dialect has no setting for, and say why beside it. */
  showDialect() {
    const { Connection } = this;
    const connected = Boolean(this.connection);
    const reasons = [];
    const disable = (id, disabled, reason) => {
      $(id).disabled = disabled;
      $(id).title = disabled ? reason : "";
      if (disabled && id !== "dialect") reasons.push(reason);
    };
    disable("dialect", connected, WHY_DISABLED.dialect);
    disable("mode", Connection.serverTakesTurns, WHY_DISABLED.turnTaking);
    disable("voice", connected && Connection.voiceFixedAtStart, WHY_DISABLED.voice);
    disable("speed", !Connection.hasSpeechSpeed, WHY_DISABLED.speed);
    $("dialect-note").textContent = reasons.join(" ");
    $("dialect-note").hidden = reasons.length === 0;
  }

  showTalkButton() {
    const talk = $("talk");
    talk.disabled = !this.connection;
    if (this.mode === "push") {
      talk.textContent = this.talking ? "Listening… let go to send" : "Hold to talk";
      talk.setAttribute("aria-pressed", String(this.talking));
    } else {
      talk.textContent = this.micOn ? "Listening (click to pause)" : "Paused (click to listen)";
      talk.setAttribute("aria-pressed", String(this.micOn));
    }
  }

  setStatus(state, text) {
    const status = $("status");
    status.dataset.state = state;
    status.textContent = text;
  }

  showError(text) {
    const box = $("error");
    box.textContent = text;
    box.hidden = !text;
  }

  // --- connecting -----------------------------------------------------------------------

  async connect() {
    this.showError("");
    const missing = missingFeatures();
    if (missing.length) {
      this.showError(`This browser lacks what the page needs: ${missing.join("; ")}.`);
      return;
    }
    $("connect").disabled = true;
    this.setStatus("connecting", "connecting…");
    try {
      await this.openAudio();
      const secret = this.config.auth_required ? await this.clientSecret() : null;
      await this.openConnection(secret);
    } catch (error) {
      this.showError(error.message);
      await this.teardown();
    } finally {
      $("connect").disabled = false;
    }
  }

  async openAudio() {
    this.audio = new AudioEngine({
      onChunk: (pcm, rms) => this.onMicrophoneChunk(pcm, rms),
      onPlayback: (event) => this.onPlayback(event),
    });
    await this.audio.start();
    try {
      await this.audio.openMicrophone();
    } catch (error) {
      throw new Error(explainMicrophoneError(error));
    }
  }

  /** A short-lived client secret: from the app's backend, or pasted (never a long-lived key). */
  async clientSecret() {
    const url = this.config.client_secret_url;
    if (!url) {
      const typed = $("secret").value.trim();
      if (!typed.startsWith(CLIENT_SECRET_PREFIX)) {
        throw new Error(
          "This server needs a key. Open the page through your app's backend, which gets a " +
            "short-lived client secret for it (see server/web/README.md), or paste one " +
            `(${CLIENT_SECRET_PREFIX}…) in the Client secret field. ` +
            "Never paste a long-lived API key into a page.",
        );
      }
      return typed;
    }
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
    } catch (error) {
      throw new Error(explainSecretError(0, error.message));
    }
    if (!response.ok) throw new Error(explainSecretError(response.status, await response.text()));
    const body = await response.json();
    if (typeof body.value !== "string") {
      throw new Error(explainSecretError(response.status, "the answer has no 'value'"));
    }
    return body.value;
  }

  async openConnection(secret) {
    const { Connection } = this;
    const realtimeUrl = this.config.realtime_url || defaultRealtimeUrl(window.location);
    const url = Connection.urlFor(realtimeUrl);
    this.connection = new Connection(url, {
      secret,
      model: this.config.model, // and the voice: what GPT-Live's session.start fixes
      voice: $("voice").value,
      onEvent: (event) => this.onEvent(event),
      onClose: (error) => this.onConnectionLost(error),
    });
    try {
      this.session = await this.connection.open();
    } catch (error) {
      this.connection = null;
      throw new Error(await this.explain(error, url));
    }
    this.sendLog = new SendLog(); // the server's audio clock starts with the session
    this.updateSession();
    if (!Connection.serverTakesTurns) this.sendTurnDetection(this.mode);
    $("connect").textContent = "Disconnect";
    this.setStatus("connected", "connected");
    this.showDialect();
    this.showTalkButton();
  }

  async explain(error, url) {
    const serverReachable = await reachable(url);
    return explainConnectionError(error, {
      url,
      authRequired: this.config.auth_required,
      serverReachable,
    });
  }

  async onConnectionLost(error) {
    const url = this.connection ? this.connection.url : "";
    this.connection = null;
    this.showError(await this.explain(error, url));
    await this.teardown();
  }

  async disconnect() {
    const connection = this.connection;
    this.connection = null;
    if (connection) connection.close();
    await this.teardown();
  }

  async teardown() {
    if (this.audio) await this.audio.close();
    this.audio = null;
    this.talking = false;
    $("connect").textContent = "Connect";
    this.setStatus("idle", "not connected");
    this.showDialect();
    this.showTalkButton();
  }

  // --- session settings -------------------------------------------------------------------

  updateSession() {
    if (!this.connection) return;
    const settings = sessionSettings({
      voice: $("voice").value,
      speed: Number($("speed").value),
      effort: $("effort").value,
      transcriptionModel: this.config.model || "default",
    });
    const eventId = this.connection.send({ type: "session.update", session: settings });
    this.pendingUpdates.set(eventId, { kind: "settings" });
  }

  setMode(mode) {
    const previous = this.mode;
    this.mode = mode;
    if (this.talking) this.stopTalking();
    if (this.connection) {
      if (mode === "push" && previous !== "push") {
        this.connection.send({ type: "input_audio_buffer.clear" }); // drop half-heard speech
      }
      this.sendTurnDetection(mode);
    }
    this.showTalkButton();
  }

  sendTurnDetection(mode) {
    const eventId = this.connection.send({
      type: "session.update",
      session: { type: "realtime", audio: { input: { turn_detection: turnDetection(mode) } } },
    });
    this.pendingUpdates.set(eventId, { kind: "mode", mode });
  }

  revertMode(text) {
    this.mode = this.acceptedMode;
    for (const radio of document.querySelectorAll('input[name="mode"]')) {
      radio.checked = radio.value === this.mode;
    }
    this.showTalkButton();
    this.showError(text);
  }

  // --- microphone -------------------------------------------------------------------------

  onMicrophoneChunk(pcm, rms) {
    $("meter-level").style.width = `${Math.min(100, (rms / METER_FULL_SCALE_RMS) * 100)}%`;
    if (!this.connection || !this.connection.isOpen) return;
    const listening = this.mode === "push" ? this.talking : this.micOn;
    if (!listening && !this.Connection.streamsWhilePaused) return;
    // paused where the session's clock is its input audio (GPT-Live): silence keeps it going
    const audio = listening ? pcm : new Int16Array(pcm.length);
    this.connection.send({ type: "input_audio_buffer.append", audio: pcmToBase64(audio) });
    this.sendLog.add((pcm.length * 1000) / WIRE_RATE, performance.now(), listening ? rms : 0);
    if (this.talking) this.sentWhileTalking += 1;
  }

  startTalking() {
    if (!this.connection || this.talking) return;
    this.bargeIn();
    this.talking = true;
    this.sentWhileTalking = 0;
    this.pushTurn = this.addUserTurn(null);
    this.setStatus("speaking", "listening…");
    this.showTalkButton();
  }

  stopTalking() {
    if (!this.talking) return;
    this.talking = false;
    this.showTalkButton();
    this.setStatus("connected", "connected");
    const turn = this.pushTurn;
    if (!this.connection || this.sentWhileTalking * APPEND_MS < MIN_PUSH_MS) {
      turn.node.remove(); // a tap, not speech: nothing to send
      this.pushTurn = null;
      if (this.connection) this.connection.send({ type: "input_audio_buffer.clear" });
      return;
    }
    turn.speechEndAt = performance.now();
    this.connection.send({ type: "input_audio_buffer.commit" });
    this.connection.send({ type: "response.create" });
  }

  // --- server events ----------------------------------------------------------------------

  onEvent(event) {
    const handler = this.handlers[event.type];
    if (handler) handler.call(this, event);
  }

  onError(event) {
    const pending = event.error.event_id && this.pendingUpdates.get(event.error.event_id);
    if (pending && pending.kind === "mode") {
      this.revertMode(
        `That turn-taking mode is not available here. ${explainServerError(event.error)}`,
      );
      return;
    }
    this.showError(explainServerError(event.error));
  }

  onSessionUpdated(event) {
    this.session = event.session;
    const detection = event.session.audio && event.session.audio.input.turn_detection;
    this.acceptedMode = detection ? detection.type : "push";
  }

  onSpeechStarted(event) {
    this.bargeIn();
    if (!this.userTurns.has(event.item_id))
      this.userTurns.set(event.item_id, this.addUserTurn(event.item_id));
    this.setStatus("speaking", "hearing you…");
  }

  onSpeechStopped(event) {
    const turn = this.userTurns.get(event.item_id);
    if (turn) turn.speechEndAt = this.sendLog.sentAt(this.speechEndMs(event.audio_end_ms));
    this.setStatus("connected", "connected");
  }

  /** Where the speech of a turn closed at `audioEndMs` ended (see latency.js). */
  speechEndMs(audioEndMs) {
    const detection = this.session && this.session.audio.input.turn_detection;
    if (detection && detection.type === "server_vad") {
      return audioEndMs - (detection.silence_duration_ms || 0);
    }
    return this.sendLog.lastLoudBefore(audioEndMs) ?? audioEndMs;
  }

  onCommitted(event) {
    let turn = this.userTurns.get(event.item_id);
    if (!turn && this.pushTurn) {
      turn = this.pushTurn;
      this.pushTurn = null;
      turn.node.dataset.itemId = event.item_id;
      this.userTurns.set(event.item_id, turn);
    }
    if (!turn) return;
    // unseen: the dialect does not tell when the server closed the turn (live.js), so the
    // latency is shown whole, not split
    turn.committedAt = event.commit_unseen ? null : performance.now();
    this.awaitingResponse = turn;
  }

  onTranscriptionDelta(event) {
    const turn = this.userTurns.get(event.item_id);
    if (turn) turn.transcript.textContent += event.delta;
  }

  onTranscriptionCompleted(event) {
    const turn = this.userTurns.get(event.item_id);
    if (turn) turn.transcript.textContent = event.transcript;
  }

  onTranscriptionFailed(event) {
    const turn = this.userTurns.get(event.item_id);
    if (turn) turn.transcript.textContent = `(no transcript: ${event.error.message})`;
  }

  onResponseCreated(event) {
    const turn = this.addAssistantTurn(event.response.id, this.awaitingResponse);
    this.awaitingResponse = null;
    this.turns.set(event.response.id, turn);
    this.active = turn;
  }

  onOutputItemAdded(event) {
    const turn = this.turns.get(event.response_id);
    if (!turn) return;
    turn.itemId = event.item.id;
    turn.node.dataset.itemId = event.item.id;
    this.byItem.set(event.item.id, turn);
  }

  onReasoningDelta(event) {
    const turn = this.turns.get(event.response_id);
    if (!turn) return;
    turn.reasoning.parentElement.hidden = false;
    turn.reasoning.textContent += event.delta;
    turn.reasoning.scrollTop = turn.reasoning.scrollHeight;
  }

  onReasoningDone(event) {
    const turn = this.turns.get(event.response_id);
    if (turn) turn.reasoning.textContent = event.text;
  }

  onTranscriptDelta(event) {
    const turn = this.turns.get(event.response_id);
    if (!turn) return;
    turn.answerText += event.delta;
    this.renderAnswer(turn);
  }

  onTranscriptDone(event) {
    const turn = this.turns.get(event.response_id);
    if (!turn) return;
    turn.answerText = event.transcript;
    this.renderAnswer(turn);
  }

  onAudioDelta(event) {
    const turn = this.turns.get(event.response_id);
    if (!turn || turn.interrupted || !this.audio) return;
    const pcm = base64ToPcm(event.delta);
    if (turn.firstAudioAt === null) {
      turn.firstAudioAt = performance.now();
      this.showLatency(turn);
    }
    turn.receivedMs += (pcm.length * 1000) / WIRE_RATE;
    turn.node.dataset.receivedMs = String(Math.round(turn.receivedMs));
    this.audio.play(event.item_id, pcm);
  }

  onAudioDone(event) {
    if (this.audio) this.audio.endItem(event.item_id);
  }

  onResponseDone(event) {
    const { response } = event;
    const turn = this.turns.get(response.id);
    if (!turn) return;
    turn.status = response.status;
    turn.node.dataset.status = response.status;
    if (response.stage_seconds) turn.stages = response.stage_seconds;
    this.showLatency(turn);
    if (turn.firstAudioAt === null && this.audio && turn.itemId) this.audio.endItem(turn.itemId);
  }

  onTruncated(event) {
    const turn = this.byItem.get(event.item_id);
    if (!turn) return;
    turn.node.dataset.truncatedMs = String(event.audio_end_ms);
    this.connection.send({ type: "conversation.item.retrieve", item_id: event.item_id });
  }

  onRetrieved(event) {
    const turn = this.byItem.get(event.item.id);
    if (!turn) return;
    const part = event.item.content[0] || {};
    turn.heardText = part.transcript ?? part.text ?? "";
    turn.node.dataset.heard = turn.heardText;
    this.renderAnswer(turn);
  }

  // --- playback and barge-in --------------------------------------------------------------

  onPlayback(event) {
    const turn = this.byItem.get(event.itemId);
    if (!turn || turn.interrupted) return; // after a stop: its figure is the one truncated at
    if (event.type === "started") turn.node.classList.add("speaking");
    if (event.playedMs !== undefined) {
      turn.playedMs = event.playedMs;
      turn.node.dataset.playedMs = String(Math.round(event.playedMs));
    }
    if (event.type === "underrun") {
      turn.underruns += 1;
      turn.node.dataset.underruns = String(turn.underruns);
    }
    if (event.type === "finished") {
      turn.finishedPlaying = true;
      turn.node.dataset.finished = "true";
      turn.node.classList.remove("speaking");
    }
  }

  /** The user speaks over the reply: silence it now, then tell the server what was heard. */
  async bargeIn() {
    const turn = this.active;
    if (!turn || turn.interrupted || turn.finishedPlaying || !this.audio) return;
    const inProgress = turn.status === "in_progress";
    if (!inProgress && turn.receivedMs === 0) return; // nothing was or will be played
    turn.interrupted = true;
    turn.node.classList.remove("speaking");
    turn.node.dataset.interrupted = "true";
    const heard = await this.audio.stop();
    const playedMs = Math.floor(heard[turn.itemId] ?? 0);
    turn.playedMs = playedMs;
    turn.node.dataset.playedMs = String(playedMs);
    turn.node.dataset.cutAtMs = String(playedMs);
    this.showLatency(turn);
    if (this.connection && turn.itemId) {
      this.connection.send({
        type: "conversation.item.truncate",
        item_id: turn.itemId,
        content_index: 0,
        audio_end_ms: playedMs,
      });
    }
  }

  // --- rendering --------------------------------------------------------------------------

  /** An item left the conversation: a client's delete, or a merge (the user went on speaking
   * right after a turn was closed, so that turn and the reply begun for it are gone). */
  onItemDeleted(event) {
    const user = this.userTurns.get(event.item_id);
    const assistant = this.byItem.get(event.item_id);
    for (const turn of [user, assistant]) if (turn) turn.node.remove();
    this.userTurns.delete(event.item_id);
    this.byItem.delete(event.item_id);
  }

  addUserTurn(itemId) {
    this.clearPlaceholder();
    const node = element("article", "turn user");
    if (itemId) node.dataset.itemId = itemId;
    node.append(element("h3", "", "You"));
    const transcript = element("p", "transcript");
    node.append(transcript);
    $("conversation").append(node);
    node.scrollIntoView({ block: "end" });
    return { node, transcript, speechEndAt: null, committedAt: null };
  }

  addAssistantTurn(responseId, userTurn) {
    this.clearPlaceholder();
    const node = element("article", "turn assistant");
    node.dataset.responseId = responseId;
    node.dataset.status = "in_progress";
    node.append(element("h3", "", "Assistant"));
    const body = element("div", "body");
    const details = element("details", "reasoning");
    details.open = true;
    details.hidden = true; // until reasoning arrives
    details.append(element("summary", "", "Reasoning"));
    const reasoning = element("p", "text");
    details.append(reasoning);
    const answer = element("p", "answer");
    body.append(details, answer);
    const meta = element("p", "meta");
    node.append(body, meta);
    $("conversation").append(node);
    node.scrollIntoView({ block: "end" });
    return {
      node,
      reasoning,
      answer,
      meta,
      responseId,
      itemId: null,
      status: "in_progress",
      answerText: "",
      heardText: null,
      speechEndAt: userTurn ? userTurn.speechEndAt : null,
      committedAt: userTurn ? userTurn.committedAt : null,
      firstAudioAt: null,
      receivedMs: 0,
      playedMs: 0,
      underruns: 0,
      interrupted: false,
      finishedPlaying: false,
      stages: null,
      latencyCounted: false,
    };
  }

  clearPlaceholder() {
    const empty = document.querySelector("#conversation .empty");
    if (empty) empty.remove();
  }

  renderAnswer(turn) {
    const { answer, answerText, heardText } = turn;
    answer.textContent = "";
    if (heardText === null) {
      answer.textContent = answerText;
      return;
    }
    // after a barge-in: what the listener heard (and the server keeps), then the rest, struck
    const heard = answerText.startsWith(heardText) ? heardText : heardText || "";
    answer.append(element("span", "heard", heard));
    const rest = answerText.startsWith(heardText) ? answerText.slice(heardText.length) : "";
    if (rest) answer.append(element("span", "unheard", rest));
  }

  showLatency(turn) {
    const split = splitLatency(turn);
    const parts = [];
    if (split.total !== null) {
      parts.push(`first audio ${formatSeconds(split.total)}`);
      turn.node.dataset.firstPacketS = split.total.toFixed(3);
      if (!turn.latencyCounted) {
        turn.latencyCounted = true;
        this.histogram.add(split.total);
      }
    }
    if (split.endpoint !== null && split.server !== null) {
      parts.push(
        `endpoint ${formatSeconds(split.endpoint)} + server ${formatSeconds(split.server)}`,
      );
      turn.node.dataset.endpointS = split.endpoint.toFixed(3);
      turn.node.dataset.serverS = split.server.toFixed(3);
    }
    turn.meta.textContent = "";
    if (parts.length) {
      turn.meta.append(element("span", "fpl", parts[0]));
      if (parts[1]) turn.meta.append(` · ${parts[1]}`);
    }
    if (turn.stages) {
      const stages = Object.entries(turn.stages).map(([name, s]) => `${name} ${formatSeconds(s)}`);
      turn.meta.title = `server stages (from the start of the response): ${stages.join(", ")}`;
    }
    if (turn.interrupted) {
      turn.meta.append(` · interrupted after ${formatSeconds(turn.playedMs / 1000)}`);
    }
  }
}

Page.prototype.handlers = {
  error: Page.prototype.onError,
  "session.updated": Page.prototype.onSessionUpdated,
  "input_audio_buffer.speech_started": Page.prototype.onSpeechStarted,
  "input_audio_buffer.speech_stopped": Page.prototype.onSpeechStopped,
  "input_audio_buffer.committed": Page.prototype.onCommitted,
  "conversation.item.input_audio_transcription.delta": Page.prototype.onTranscriptionDelta,
  "conversation.item.input_audio_transcription.completed": Page.prototype.onTranscriptionCompleted,
  "conversation.item.input_audio_transcription.failed": Page.prototype.onTranscriptionFailed,
  "response.created": Page.prototype.onResponseCreated,
  "response.output_item.added": Page.prototype.onOutputItemAdded,
  "response.reasoning_text.delta": Page.prototype.onReasoningDelta,
  "response.reasoning_text.done": Page.prototype.onReasoningDone,
  "response.output_audio_transcript.delta": Page.prototype.onTranscriptDelta,
  "response.output_audio_transcript.done": Page.prototype.onTranscriptDone,
  "response.output_audio.delta": Page.prototype.onAudioDelta,
  "response.output_audio.done": Page.prototype.onAudioDone,
  "response.done": Page.prototype.onResponseDone,
  "conversation.item.truncated": Page.prototype.onTruncated,
  "conversation.item.deleted": Page.prototype.onItemDeleted,
  "conversation.item.retrieved": Page.prototype.onRetrieved,
};

/** Whether the server answers at all (to tell "unreachable" from "refused"). */
async function reachable(realtimeUrl) {
  const health = new URL("/healthz", realtimeUrl.replace(/^ws/, "http"));
  try {
    await fetch(health, { mode: "no-cors", cache: "no-store" });
    return true;
  } catch {
    return false;
  }
}

async function main() {
  let config;
  try {
    const response = await fetch(CONFIG_URL, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    config = await response.json();
  } catch (error) {
    $("error").textContent =
      `The page could not load its settings from ${CONFIG_URL} (${error.message}).`;
    $("error").hidden = false;
    return;
  }
  window.stepRealtimePage = new Page(config); // for the browser console and the tests
  document.body.dataset.ready = "true";
}

main();
