// AudioWorklet processors of the softphone helpers (loaded with
// audioContext.audioWorklet.addModule; they run on the audio rendering thread).
//
// clutchcall-capture: cuts the microphone into frames of ``frameSamples`` samples and
//   posts each one (planar Float32Array, ownership transferred) with its RMS level.
// clutchcall-player: a ring buffer of decoded PCM that feeds the output. It starts
//   playing once ``prebufferMs`` are buffered; when it runs dry it fades the last
//   sample to zero within a few samples and then plays exact silence (no click, no
//   repeated audio) until it has ``prebufferMs`` again. It holds at most
//   ``maxBufferMs``: older audio is dropped (and counted) so latency stays bounded.
//   On request it copies what it actually played (a tap, for meters and tests).

const FADE_SAMPLES = 96;
const STATS_EVERY_BLOCKS = 16;

class CaptureProcessor extends AudioWorkletProcessor {
  /** @param {AudioWorkletNodeOptions} options */
  constructor(options) {
    super(options);
    const opts = options.processorOptions ?? {};
    /** @type {number} */
    this.frameSamples = opts.frameSamples ?? 960;
    /** @type {number} */
    this.channels = opts.channels ?? 1;
    this.frame = new Float32Array(this.frameSamples * this.channels);
    this.fill = 0;
    this.squares = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "stop") this.running = false;
    };
  }

  /** @param {Float32Array[][]} inputs */
  process(inputs) {
    if (!this.running) return false;
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const n = input[0].length;
    for (let i = 0; i < n; i++) {
      for (let ch = 0; ch < this.channels; ch++) {
        const sample = input[Math.min(ch, input.length - 1)][i];
        this.frame[ch * this.frameSamples + this.fill] = sample;
        if (ch === 0) this.squares += sample * sample;
      }
      this.fill++;
      if (this.fill === this.frameSamples) {
        const rms = Math.sqrt(this.squares / this.frameSamples);
        this.port.postMessage({ samples: this.frame, rms }, [this.frame.buffer]);
        this.frame = new Float32Array(this.frameSamples * this.channels);
        this.fill = 0;
        this.squares = 0;
      }
    }
    return true;
  }
}

class PlayerProcessor extends AudioWorkletProcessor {
  /** @param {AudioWorkletNodeOptions} options */
  constructor(options) {
    super(options);
    const opts = options.processorOptions ?? {};
    /** @type {number} */
    this.channels = opts.channels ?? 1;
    /** @type {number} */
    this.prebuffer = Math.round(((opts.prebufferMs ?? 40) * sampleRate) / 1000);
    /** @type {number} */
    this.capacity = Math.max(this.prebuffer * 2, Math.round(((opts.maxBufferMs ?? 400) * sampleRate) / 1000));
    this.ring = Array.from({ length: this.channels }, () => new Float32Array(this.capacity));
    this.readPos = 0;
    this.count = 0;
    this.playing = false;
    this.fadeIn = FADE_SAMPLES;
    /** Last value played on each channel, faded out on underrun. */
    this.last = new Float32Array(this.channels);
    this.fadeOut = 0;
    this.underruns = 0;
    this.dropped = 0;
    this.played = 0;
    this.silent = 0;
    this.squares = 0;
    this.squaresCount = 0;
    this.blocks = 0;
    this.closed = false;
    // Resampler state (decoded rate -> context rate), per channel.
    this.phase = 0;
    this.prev = new Float32Array(this.channels);
    /** @type {{id: number, buffer: Float32Array, fill: number} | null} */
    this.tap = null;
    this.port.onmessage = (event) => this.onMessage(event.data);
  }

  /** @param {any} message */
  onMessage(message) {
    if (message.type === "pcm") this.write(message.planes, message.rate);
    else if (message.type === "tap") this.tap = { id: message.id, buffer: new Float32Array(message.samples), fill: 0 };
    else if (message.type === "close") this.closed = true;
  }

  /**
   * Linear resampling of one decoded chunk to the context rate, continuous across chunks.
   * @param {Float32Array[]} planes
   * @param {number} rate
   */
  resample(planes, rate) {
    if (rate === sampleRate) return planes;
    const step = rate / sampleRate;
    const len = planes[0].length;
    const t0 = this.phase;
    const count = t0 > len - 1 ? 0 : Math.floor((len - 1 - t0) / step) + 1;
    const out = planes.map((plane, ch) => {
      const result = new Float32Array(count);
      let t = t0;
      for (let k = 0; k < count; k++, t += step) {
        const i = Math.floor(t);
        const f = t - i;
        const a = i < 0 ? this.prev[ch] : plane[i];
        const b = i + 1 < len ? plane[i + 1] : a;
        result[k] = a + (b - a) * f;
      }
      this.prev[ch] = plane[len - 1];
      return result;
    });
    this.phase = t0 + count * step - len;
    return out;
  }

  /**
   * @param {Float32Array[]} planes
   * @param {number} rate
   */
  write(planes, rate) {
    if (!planes.length || !planes[0].length) return;
    const data = this.resample(planes, rate);
    const n = data[0].length;
    for (let i = 0; i < n; i++) {
      if (this.count === this.capacity) {
        // Full: drop the oldest sample to keep the latency bounded.
        this.readPos = (this.readPos + 1) % this.capacity;
        this.count--;
        this.dropped++;
      }
      const at = (this.readPos + this.count) % this.capacity;
      for (let ch = 0; ch < this.channels; ch++) this.ring[ch][at] = data[Math.min(ch, data.length - 1)][i];
      this.count++;
    }
  }

  /**
   * @param {Float32Array[][]} _inputs
   * @param {Float32Array[][]} outputs
   */
  process(_inputs, outputs) {
    const out = outputs[0];
    const n = out[0].length;
    if (!this.playing && this.count >= this.prebuffer) {
      this.playing = true;
      this.fadeIn = 0;
    }
    for (let i = 0; i < n; i++) {
      if (this.playing && this.count > 0) {
        const gain = this.fadeIn < FADE_SAMPLES ? ++this.fadeIn / FADE_SAMPLES : 1;
        for (let ch = 0; ch < out.length; ch++) {
          const value = this.ring[Math.min(ch, this.channels - 1)][this.readPos] * gain;
          out[ch][i] = value;
          if (ch < this.channels) this.last[ch] = value;
        }
        this.readPos = (this.readPos + 1) % this.capacity;
        this.count--;
        this.played++;
      } else {
        if (this.playing) {
          // Ran dry: fade what was playing to zero, then play silence until refilled.
          this.playing = false;
          this.underruns++;
          this.fadeOut = FADE_SAMPLES;
        }
        const gain = this.fadeOut > 0 ? --this.fadeOut / FADE_SAMPLES : 0;
        for (let ch = 0; ch < out.length; ch++) {
          out[ch][i] = this.last[Math.min(ch, this.channels - 1)] * gain;
        }
        if (gain === 0) this.last.fill(0);
        this.silent++;
      }
      this.squares += out[0][i] * out[0][i];
    }
    this.squaresCount += n;
    const tap = this.tap;
    if (tap !== null) {
      const take = Math.min(n, tap.buffer.length - tap.fill);
      tap.buffer.set(out[0].subarray(0, take), tap.fill);
      tap.fill += take;
      if (tap.fill === tap.buffer.length) {
        this.port.postMessage({ type: "tap", id: tap.id, samples: tap.buffer }, [tap.buffer.buffer]);
        this.tap = null;
      }
    }
    if (++this.blocks % STATS_EVERY_BLOCKS === 0) {
      this.port.postMessage({
        type: "stats",
        bufferedMs: (this.count * 1000) / sampleRate,
        underruns: this.underruns,
        dropped: this.dropped,
        played: this.played,
        silent: this.silent,
        rms: Math.sqrt(this.squares / Math.max(1, this.squaresCount)),
      });
      this.squares = 0;
      this.squaresCount = 0;
    }
    return !this.closed;
  }
}

registerProcessor("clutchcall-capture", CaptureProcessor);
registerProcessor("clutchcall-player", PlayerProcessor);
