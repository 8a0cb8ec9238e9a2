// Browser softphone helpers: captureMicrophone (mic -> AEC/AGC/noise suppression ->
// Opus -> a MoQT publication) and OpusPlayer (Opus -> WebCodecs decode -> AudioWorklet
// ring buffer -> speakers, silence on underrun). No WebRTC transport is involved:
// the frames travel on MoQT over WebTransport (see bridge.js).

import { monotonicUs } from "./moqt.js";

const WORKLET_URL = new URL("./worklets.js", import.meta.url);
/** @type {WeakMap<BaseAudioContext, Promise<void>>} */
const loaded = new WeakMap();

/**
 * Load the capture and player processors into ``context`` (once per context).
 * @param {BaseAudioContext} context
 */
export function loadWorklets(context) {
  let promise = loaded.get(context);
  if (promise === undefined) {
    promise = context.audioWorklet.addModule(WORKLET_URL);
    loaded.set(context, promise);
  }
  return promise;
}

/** @param {number} rms a linear RMS level (full scale 1.0) @returns {number} dBFS, at least -100 */
export function dbfs(rms) {
  return Math.max(-100, 20 * Math.log10(Math.max(rms, 1e-5)));
}

function requireWebCodecs() {
  if (typeof AudioEncoder === "undefined" || typeof AudioDecoder === "undefined") {
    throw new Error("WebCodecs audio (AudioEncoder/AudioDecoder) is not available in this browser or context");
  }
}

/**
 * Where captured frames go: an AudioPublication (client.publishAudio), or any
 * object with the same write method, e.g. ``{ write: (tsUs, f) => bridge.publishUplink(f, tsUs) }``.
 * @typedef {{write: (tsUs: number, frame: Uint8Array) => void}} FrameSink
 */

/**
 * @typedef {{
 *   audioConstraints?: MediaTrackConstraints,
 *   sampleRate?: number,
 *   channels?: number,
 *   frameMs?: number,
 *   bitrate?: number,
 *   context?: AudioContext,
 *   stream?: MediaStream,
 *   clock?: () => number,
 * }} CaptureOptions
 */

/** A running microphone capture; ``stop()`` tears the capture graph down. */
export class MicCapture {
  /**
   * @param {{stream: MediaStream, context: AudioContext, ownStream: boolean, ownContext: boolean,
   *          source: MediaStreamAudioSourceNode, node: AudioWorkletNode, encoder: AudioEncoder}} parts
   * @param {{framesCaptured: number, framesEncoded: number, framesDropped: number, errors: number}} stats
   */
  constructor(parts, stats) {
    /** The microphone stream. */
    this.stream = parts.stream;
    /** The AudioContext the capture graph runs in. */
    this.context = parts.context;
    this.parts = parts;
    this.stopped = false;
    /** RMS level of the last captured frame (linear, full scale 1.0). */
    this.level = 0;
    /** Frames captured, encoded (and written), dropped to stay real-time; write errors. */
    this.stats = stats;
  }

  /** Stop capturing: the graph, the encoder and (if it opened it) the mic. The
   * publication stays open: close it (or the bridge) separately. */
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    const { node, source, encoder, stream, context, ownStream, ownContext } = this.parts;
    node.port.postMessage("stop");
    node.port.onmessage = null;
    source.disconnect();
    node.disconnect();
    if (encoder.state !== "closed") encoder.close();
    if (ownStream) for (const track of stream.getTracks()) track.stop();
    if (ownContext) context.close().catch(() => {});
    this.level = 0;
  }
}

/**
 * Capture the microphone, run echo cancellation, gain control and noise suppression,
 * Opus-encode 20 ms frames with WebCodecs, and write each to ``publication``.
 * @param {FrameSink} publication
 * @param {CaptureOptions} [options]
 * @returns {Promise<MicCapture>}
 */
export async function captureMicrophone(publication, options = {}) {
  requireWebCodecs();
  if (!publication || typeof publication.write !== "function") {
    throw new TypeError("publication must have a write(tsUs, frame) method");
  }
  const {
    audioConstraints = { echoCancellation: true, autoGainControl: true, noiseSuppression: true },
    sampleRate = 48000,
    channels = 1,
    frameMs = 20,
    bitrate = 32000,
    clock = monotonicUs,
  } = options;
  const stream =
    options.stream ??
    (await navigator.mediaDevices.getUserMedia({ audio: { ...audioConstraints, channelCount: { ideal: channels } } }));
  const context = options.context ?? new AudioContext({ sampleRate, latencyHint: "interactive" });
  try {
    await loadWorklets(context);
    if (context.state === "suspended") await context.resume().catch(() => {});
    /** @type {AudioEncoderConfig} */
    const config = {
      codec: "opus",
      sampleRate: context.sampleRate,
      numberOfChannels: channels,
      bitrate,
      opus: { frameDuration: frameMs * 1000, format: "opus" },
    };
    const support = await AudioEncoder.isConfigSupported(config);
    if (!support.supported) throw new Error(`this browser cannot encode ${JSON.stringify(config)}`);
    /** Capture times of the frames in the encoder, oldest first (one packet per frame). */
    /** @type {number[]} */
    const stamps = [];
    const stats = { framesCaptured: 0, framesEncoded: 0, framesDropped: 0, errors: 0 };
    const encoder = new AudioEncoder({
      output: (chunk) => {
        const frame = new Uint8Array(chunk.byteLength);
        chunk.copyTo(frame);
        const tsUs = stamps.shift() ?? chunk.timestamp;
        stats.framesEncoded++;
        try {
          publication.write(tsUs, frame);
        } catch (error) {
          stats.errors++;
          if (stats.errors === 1) console.warn("clutchcall: the publication refused a frame", error);
        }
      },
      error: (error) => {
        stats.errors++;
        console.warn("clutchcall: the Opus encoder failed", error);
      },
    });
    encoder.configure(config);
    const frameSamples = Math.round((context.sampleRate * frameMs) / 1000);
    const source = context.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(context, "clutchcall-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCount: channels,
      channelCountMode: "explicit",
      processorOptions: { frameSamples, channels },
    });
    const capture = new MicCapture({
      stream,
      context,
      ownStream: options.stream === undefined,
      ownContext: options.context === undefined,
      source,
      node,
      encoder,
    }, stats);
    node.port.onmessage = (event) => {
      const { samples, rms } = event.data;
      capture.level = rms;
      if (capture.stopped || encoder.state !== "configured") return;
      if (encoder.encodeQueueSize > 8) {
        capture.stats.framesDropped++; // the encoder is falling behind: stay real-time
        return;
      }
      const tsUs = clock();
      const data = new AudioData({
        format: "f32-planar",
        sampleRate: context.sampleRate,
        numberOfFrames: frameSamples,
        numberOfChannels: channels,
        timestamp: tsUs,
        data: samples,
      });
      stamps.push(tsUs);
      if (stamps.length > 64) stamps.shift();
      encoder.encode(data);
      data.close();
      capture.stats.framesCaptured++;
    };
    source.connect(node);
    return capture;
  } catch (error) {
    if (options.stream === undefined) for (const track of stream.getTracks()) track.stop();
    if (options.context === undefined) context.close().catch(() => {});
    throw error;
  }
}

/**
 * @typedef {{
 *   decoded: number, dropped: number, decodeErrors: number, underruns: number,
 *   bufferedMs: number, played: number, silent: number, overflowDropped: number, level: number,
 * }} PlayerStats
 */

/**
 * Decodes Opus frames with WebCodecs and plays them through an AudioWorklet ring
 * buffer (silence on underrun). ``start()`` once, then ``push(tsUs, frame)`` each frame.
 */
export class OpusPlayer {
  /**
   * @param {AudioContext} context
   * @param {{sampleRate?: number, channels?: number, prebufferMs?: number, maxBufferMs?: number,
   *          destination?: AudioNode}} [options]
   */
  constructor(context, options = {}) {
    this.context = context;
    this.sampleRate = options.sampleRate ?? 48000;
    this.channels = options.channels ?? 1;
    this.prebufferMs = options.prebufferMs ?? 40;
    this.maxBufferMs = options.maxBufferMs ?? 400;
    this.destination = options.destination ?? context.destination;
    /** The node the decoded audio comes out of (connect meters or effects to it). @type {AudioWorkletNode | null} */
    this.output = null;
    /** @type {AudioDecoder | null} */
    this.decoder = null;
    this.closed = false;
    this.nextTapId = 1;
    /** @type {Map<number, (samples: Float32Array) => void>} */
    this.taps = new Map();
    /** @type {PlayerStats} */
    this.stats = {
      decoded: 0,
      dropped: 0,
      decodeErrors: 0,
      underruns: 0,
      bufferedMs: 0,
      played: 0,
      silent: 0,
      overflowDropped: 0,
      level: 0,
    };
  }

  /** Load the worklet, open the decoder and connect to the speakers. */
  async start() {
    if (this.output !== null || this.closed) return;
    requireWebCodecs();
    await loadWorklets(this.context);
    /** @type {AudioDecoderConfig} */
    const config = { codec: "opus", sampleRate: this.sampleRate, numberOfChannels: this.channels };
    const support = await AudioDecoder.isConfigSupported(config);
    if (!support.supported) throw new Error(`this browser cannot decode ${JSON.stringify(config)}`);
    const node = new AudioWorkletNode(this.context, "clutchcall-player", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [this.channels],
      processorOptions: { channels: this.channels, prebufferMs: this.prebufferMs, maxBufferMs: this.maxBufferMs },
    });
    node.port.onmessage = (event) => this.onWorkletMessage(event.data);
    node.connect(this.destination);
    this.output = node;
    this.openDecoder(config);
    if (this.context.state === "suspended") await this.context.resume().catch(() => {});
  }

  /** @param {AudioDecoderConfig} config */
  reopenDecoder(config) {
    if (this.closed) return;
    // A corrupt frame closes a WebCodecs decoder: open a new one and carry on.
    this.openDecoder(config);
  }

  /** @param {AudioDecoderConfig} config */
  openDecoder(config) {
    this.decoder = new AudioDecoder({
      output: (data) => this.onDecoded(data),
      error: () => {
        this.stats.decodeErrors++;
        this.reopenDecoder(config);
      },
    });
    this.decoder.configure(config);
  }

  /** @param {AudioData} data */
  onDecoded(data) {
    try {
      if (this.closed || this.output === null) return;
      const planes = [];
      for (let ch = 0; ch < data.numberOfChannels; ch++) {
        const plane = new Float32Array(data.numberOfFrames);
        data.copyTo(plane, { planeIndex: ch, format: "f32-planar" });
        planes.push(plane);
      }
      this.stats.decoded++;
      this.output.port.postMessage(
        { type: "pcm", planes, rate: data.sampleRate },
        planes.map((p) => p.buffer),
      );
    } finally {
      data.close();
    }
  }

  /** @param {any} message */
  onWorkletMessage(message) {
    if (message.type === "stats") {
      this.stats.underruns = message.underruns;
      this.stats.bufferedMs = message.bufferedMs;
      this.stats.played = message.played;
      this.stats.silent = message.silent;
      this.stats.overflowDropped = message.dropped;
      this.stats.level = message.rms;
    } else if (message.type === "tap") {
      const resolve = this.taps.get(message.id);
      this.taps.delete(message.id);
      resolve?.(message.samples);
    }
  }

  /**
   * Decode and queue one encoded frame for playback.
   * @param {number} tsUs media timestamp (microseconds)
   * @param {Uint8Array | ArrayBuffer} frame
   */
  push(tsUs, frame) {
    const decoder = this.decoder;
    if (this.closed || decoder === null || decoder.state !== "configured") {
      this.stats.dropped++;
      return;
    }
    if (decoder.decodeQueueSize > 50) {
      this.stats.dropped++; // the decoder is falling behind: stay real-time
      return;
    }
    const data = frame instanceof Uint8Array ? frame : new Uint8Array(frame);
    if (!data.length) return;
    decoder.decode(new EncodedAudioChunk({ type: "key", timestamp: Math.round(tsUs) || 0, data }));
  }

  /**
   * What the player actually plays over the next ``ms`` milliseconds (first channel),
   * as the worklet outputs it: silence included. For meters and tests.
   * @param {number} ms
   * @returns {Promise<Float32Array>}
   */
  recordOutput(ms) {
    const output = this.output;
    if (output === null) return Promise.reject(new Error("start() the player first"));
    const id = this.nextTapId++;
    const samples = Math.max(1, Math.round((ms * this.context.sampleRate) / 1000));
    return new Promise((resolve) => {
      this.taps.set(id, resolve);
      output.port.postMessage({ type: "tap", id, samples });
    });
  }

  /** Stop playback and release the decoder. */
  close() {
    if (this.closed) return;
    this.closed = true;
    if (this.decoder !== null && this.decoder.state !== "closed") this.decoder.close();
    if (this.output !== null) {
      this.output.port.postMessage({ type: "close" });
      this.output.disconnect();
    }
  }
}
