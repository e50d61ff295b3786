// First-packet latency per turn, split into the endpoint part and the server part, and the small
// running histogram of it against the target line.
//
// first-packet latency = first reply audio received - end of the user's speech
//   endpoint part = input_audio_buffer.committed received - end of speech (the turn-end
//                   silence window under turn detection; the round trip of the commit under
//                   push to talk)
//   server part   = first reply audio received - committed received
// The end of speech is when the page sent the last voiced audio, or when the Talk button was let
// go (push to talk). Under server_vad the voiced audio ends at speech_stopped's audio_end_ms less
// the silence window; semantic_vad waits as long as it judges right, so there the page takes
// its own microphone level: the last append louder than SPEECH_RMS before audio_end_ms.

const HISTOGRAM_BIN_S = 0.1;
const HISTOGRAM_MAX_S = 2.0; // slower turns are counted in the last bin
const SEND_LOG_LIMIT = 6000; // appends remembered for the mapping: 2 minutes at 20 ms
// An append this loud (RMS of full scale, about -40 dBFS) counts as speech for semantic_vad's
// end of speech: well above a quiet room after the browser's noise suppression.
export const SPEECH_RMS = 0.01;

/** When each piece of input audio was sent: audio milliseconds to page time. */
export class SendLog {
  constructor() {
    this.entries = []; // [audio ms at the end of the append, performance.now() when sent, rms]
    this.audioMs = 0;
  }

  add(durationMs, sentAt, rms = 0) {
    this.audioMs += durationMs;
    this.entries.push([this.audioMs, sentAt, rms]);
    if (this.entries.length > SEND_LOG_LIMIT) this.entries.splice(0, this.entries.length / 2);
  }

  /** The moment the audio up to `audioMs` had been sent, or null if it is not remembered. */
  sentAt(audioMs) {
    let low = 0;
    let high = this.entries.length - 1;
    if (high < 0 || this.entries[high][0] < audioMs) return null;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (this.entries[middle][0] >= audioMs) high = middle;
      else low = middle + 1;
    }
    return this.entries[low][1];
  }

  /** The end (audio ms) of the last append louder than `level` that ended by `audioMs`. */
  lastLoudBefore(audioMs, level = SPEECH_RMS) {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const [endMs, , rms] = this.entries[i];
      if (endMs <= audioMs && rms >= level) return endMs;
    }
    return null;
  }
}

/** The split of one turn, in seconds; null parts where a moment is unknown. */
export function splitLatency({ speechEndAt, committedAt, firstAudioAt }) {
  const seconds = (from, to) => (from == null || to == null ? null : (to - from) / 1000);
  return {
    total: seconds(speechEndAt, firstAudioAt),
    endpoint: seconds(speechEndAt, committedAt),
    server: seconds(committedAt, firstAudioAt),
  };
}

export function formatSeconds(value) {
  return value == null ? "–" : `${value.toFixed(2)} s`;
}

function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export class LatencyHistogram {
  constructor(svg, summary, targetSeconds) {
    this.svg = svg;
    this.summary = summary;
    this.target = targetSeconds;
    this.values = [];
    this.render();
  }

  add(seconds) {
    this.values.push(seconds);
    this.render();
  }

  render() {
    const bins = Math.round(HISTOGRAM_MAX_S / HISTOGRAM_BIN_S);
    const counts = new Array(bins).fill(0);
    for (const value of this.values) {
      counts[Math.min(bins - 1, Math.floor(value / HISTOGRAM_BIN_S))] += 1;
    }
    const width = 300;
    const height = 110;
    const plot = height - 20; // room for the axis labels
    const highest = Math.max(1, ...counts);
    const barWidth = width / bins;
    const parts = [];
    counts.forEach((count, i) => {
      const barHeight = (count / highest) * (plot - 12);
      const over = (i + 1) * HISTOGRAM_BIN_S > this.target;
      parts.push(
        `<rect class="bar${over ? " over" : ""}" x="${i * barWidth + 1}" ` +
          `y="${plot - barHeight}" width="${barWidth - 2}" height="${barHeight}"></rect>`,
      );
    });
    const targetX = (this.target / HISTOGRAM_MAX_S) * width;
    parts.push(
      `<line class="target" x1="${targetX}" x2="${targetX}" y1="0" y2="${plot}"></line>`,
      `<text class="target-label" x="${targetX + 4}" y="10">${this.target} s</text>`,
      `<line class="axis" x1="0" x2="${width}" y1="${plot}" y2="${plot}"></line>`,
    );
    for (let s = 0; s <= HISTOGRAM_MAX_S; s += 0.5) {
      const x = (s / HISTOGRAM_MAX_S) * width;
      const anchor = s === 0 ? "start" : s >= HISTOGRAM_MAX_S ? "end" : "middle";
      const label = `${s.toFixed(1)} s`;
      parts.push(
        `<text class="tick" x="${x}" y="${height - 4}" text-anchor="${anchor}">${label}</text>`,
      );
    }
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.svg.innerHTML = parts.join("");
    this.summary.textContent = this.describe();
  }

  describe() {
    const n = this.values.length;
    if (n === 0) return "No turns yet.";
    const sorted = [...this.values].sort((a, b) => a - b);
    const under = this.values.filter((v) => v <= this.target).length;
    return (
      `${n} turn${n === 1 ? "" : "s"}: median ${formatSeconds(quantile(sorted, 0.5))}, ` +
      `p95 ${formatSeconds(quantile(sorted, 0.95))}; ${under} of ${n} within ${this.target} s`
    );
  }
}
