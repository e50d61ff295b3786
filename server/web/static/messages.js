// What went wrong, or is not available, in plain words, with what to do about it.

/** A microphone that could not be opened (getUserMedia's rejection). */
export function explainMicrophoneError(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return (
        "The browser was not allowed to use the microphone. Allow it for this page (the icon " +
        "at the left of the address bar) and press Connect again."
      );
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Plug one in and press Connect again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone is in use by another program, or could not be started.";
    default:
      return `The microphone could not be opened: ${error && error.message}`;
  }
}

/** A connection that failed or ended (a ConnectionError from connection.js). */
export function explainConnectionError(error, { url, authRequired, serverReachable }) {
  if (error.kind === "not_started") {
    const detail = error.serverError ? `: ${error.serverError.message}` : "";
    return `The server did not start the session${detail}.`;
  }
  if (error.kind === "full") {
    const detail = error.serverError ? ` (${error.serverError.message})` : "";
    return (
      "The server is full: every session it can serve is in use" +
      `${detail}. Try again in a minute.`
    );
  }
  if (error.kind === "refused") {
    if (!serverReachable) {
      return `The server at ${url} cannot be reached. Is it running (step-realtime serve)?`;
    }
    if (authRequired) {
      return (
        "The server refused the key: the client secret is wrong or has expired. Press " +
        "Connect to get a new one."
      );
    }
    return `The server refused the connection (close code ${error.code}).`;
  }
  if (error.serverError) return `The session ended: ${error.serverError.message}`;
  return (
    `The connection to the server was lost (close code ${error.code}). ` +
    "Press Connect to start again."
  );
}

/** An `error` event from the server that does not end the session. */
export function explainServerError(error) {
  switch (error.code) {
    case "input_audio_buffer_commit_empty":
      return "Nothing was heard: hold the Talk button down while you speak.";
    case "session_limit_reached":
      return `The server is full: ${error.message}.`;
    case "server_error":
      return "The server failed to answer; the details are in its log. Ask again.";
    default:
      return `The server said: ${error.message}`;
  }
}

/** The app's backend did not give a client secret. */
export function explainSecretError(status, detail) {
  if (status === 0) {
    return `The app's backend could not be reached for a client secret (${detail}).`;
  }
  return `The app's backend did not give a client secret (HTTP ${status}: ${detail}).`;
}

/** Why a control is disabled: what GPT-Live has no setting for, or what waits for a disconnect. */
export const WHY_DISABLED = {
  turnTaking:
    "GPT-Live: the server takes the turns. It hears when you have finished and stops a reply " +
    "you speak over, so there is no push to talk and no turn detection to choose; Talk " +
    "pauses listening.",
  voice: "GPT-Live fixes the voice when the session starts: disconnect to change it.",
  speed: "GPT-Live has no speech speed setting.",
  dialect: "Disconnect to change the protocol.",
};
