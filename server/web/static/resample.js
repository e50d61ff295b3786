// A streaming windowed-sinc resampler for mono Float32 audio, any rate to any rate.
//
// Used by both worklets: the microphone (the AudioContext's rate, usually 44.1 or 48 kHz) to the
// wire's 24 kHz, and the reply audio (24 kHz) to the AudioContext's rate. A linear interpolator
// would alias everything above 12 kHz back into the speech band when going 48 -> 24 kHz; a
// Blackman-windowed sinc keeps the stop band below -70 dB.

// Zero crossings of the sinc on each side of the centre, at the lower of the two rates: more
// gives a narrower transition band, at 2 * this many multiply-adds per output sample (per the
// ratio when downsampling).
const ZERO_CROSSINGS = 16;
// Pass band edge as a fraction of the lower rate's Nyquist frequency: 0.92 keeps speech (up to
// 11 kHz at 24 kHz) untouched and leaves the transition band room to fall before Nyquist.
const CUTOFF = 0.92;
// The kernel is tabulated at this many points per zero crossing and linearly interpolated.
const TABLE_STEPS = 512;

let kernelTable = null;

function blackman(t) {
  // t in [-1, 1]
  return 0.42 + 0.5 * Math.cos(Math.PI * t) + 0.08 * Math.cos(2 * Math.PI * t);
}

function kernel() {
  if (kernelTable === null) {
    const size = ZERO_CROSSINGS * TABLE_STEPS + 2;
    kernelTable = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      const x = i / TABLE_STEPS;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      kernelTable[i] = x >= ZERO_CROSSINGS ? 0 : sinc * blackman(x / ZERO_CROSSINGS);
    }
  }
  return kernelTable;
}

export class Resampler {
  /** Converts `inRate` Hz to `outRate` Hz, chunk by chunk, with state across chunks. Output
   * sample n sits at input position n * inRate / outRate, computed from whole numbers so that
   * the output count is exact however the input is cut. */
  constructor(inRate, outRate) {
    for (const [name, rate] of [
      ["inRate", inRate],
      ["outRate", outRate],
    ]) {
      if (!Number.isInteger(rate) || rate <= 0) {
        throw new RangeError(`${name} must be a positive number of Hz, got ${rate}`);
      }
    }
    this.inRate = inRate;
    this.outRate = outRate;
    // the cutoff in units of the input's Nyquist: lower when downsampling
    this.scale = Math.min(1, outRate / inRate) * CUTOFF;
    this.halfWidth = Math.ceil(ZERO_CROSSINGS / this.scale); // input samples each side
    this.table = kernel();
    this.buffer = new Float32Array(this.halfWidth); // silence before the first sample
    this.bufferStart = -this.halfWidth; // input index of buffer[0]
    this.received = 0; // input samples so far
    this.produced = 0; // output samples so far
  }

  /** Resamples `input` (Float32Array); returns what can be computed so far. */
  process(input) {
    const joined = this.join(input);
    this.received += input.length;
    // output n needs input up to floor(n * inRate / outRate) + halfWidth
    return this.render(joined, this.received - this.halfWidth);
  }

  /** The rest: the outputs up to the end of the input so far, computed against silence after
   * it (so that the output lasts as long as the input did). The resampler is spent after this. */
  flush() {
    const joined = this.join(new Float32Array(this.halfWidth + 1));
    return this.render(joined, this.received);
  }

  join(input) {
    const joined = new Float32Array(this.buffer.length + input.length);
    joined.set(this.buffer);
    joined.set(input, this.buffer.length);
    return joined;
  }

  /** The outputs whose centre lies before input index `limit`. */
  render(joined, limit) {
    const { halfWidth, scale, table, inRate, outRate } = this;
    const end = Math.ceil((Math.max(0, limit) * outRate) / inRate); // first n at or past limit
    const count = Math.max(0, end - this.produced);
    const out = new Float32Array(count);
    const tableScale = scale * TABLE_STEPS;
    for (let n = 0; n < count; n++) {
      const centre = ((this.produced + n) * inRate) / outRate - this.bufferStart;
      const base = Math.floor(centre);
      let sum = 0;
      for (let k = base - halfWidth + 1; k <= base + halfWidth; k++) {
        const t = Math.abs(centre - k) * tableScale;
        const i = Math.floor(t);
        if (i >= table.length - 1) continue;
        sum += joined[k] * (table[i] + (table[i + 1] - table[i]) * (t - i));
      }
      out[n] = sum * scale;
    }
    this.produced += count;
    // keep what the next outputs still reach back to
    const next = Math.floor((this.produced * inRate) / outRate);
    const keepFrom = Math.max(0, next - halfWidth + 1 - this.bufferStart);
    this.buffer = joined.slice(keepFrom);
    this.bufferStart += keepFrom;
    return out;
  }
}

/** Float32 samples in [-1, 1] to Int16 PCM (clipped). */
export function floatToInt16(samples) {
  const out = new Int16Array(samples.length);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    out[i] = s < 0 ? Math.round(s * 32768) : Math.round(s * 32767);
  }
  return out;
}

/** Int16 PCM to Float32 samples in [-1, 1). */
export function int16ToFloat(samples) {
  const out = new Float32Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = samples[i] / 32768;
  return out;
}
