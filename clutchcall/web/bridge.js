// audioBridge.attachCaller: the softphone path. The browser publishes the call's
// uplink (mic -> cloud) and subscribes its downlink (cloud -> caller) over
// WebTransport MoQT, never WebRTC; the mirror of attach() on the server side.
//
//   const bridge = await audioBridge.attachCaller(call.sid, {
//     codec: "opus",
//     credentials: async (fresh) => ({ url, token, serverCertificateHashes }),
//     onDownlink: (frame, tsUs) => player.push(tsUs, frame),
//   });
//   bridge.publishUplink(opusFrame, tsUs);
//   bridge.close();
//
// The browser never holds an API key: ``credentials`` returns a short-lived caller
// bridge token for this call (from your backend, or the dev engine's softphone
// session), the relay's WebTransport URL and, for a self-signed relay, its
// certificate hash. It is called again before each redial, with ``fresh`` true
// when the relay refused the previous token.

import { BridgeClosedError, MoqtClient, certificateHash } from "./moqt.js";

export const AUDIO_CODECS = Object.freeze(["opus", "pcm16", "g711_ulaw", "g711_alaw"]);

/** @typedef {import("./moqt.js").AudioStats} AudioStats */
/** @typedef {import("./moqt.js").Credentials} Credentials */
/** @typedef {(frame: Uint8Array, tsUs: number) => void} FrameCallback */

/**
 * How to reach the relay for one call: either fixed values or a function.
 * @typedef {{
 *   codec?: string,
 *   sampleRate?: number,
 *   channels?: number,
 *   frameMs?: number,
 *   onDownlink?: FrameCallback | null,
 *   credentials?: (fresh: boolean) => Promise<{
 *     relayUrl?: string, url?: string, token: string,
 *     certificateHash?: string | null, serverCertificateHashes?: WebTransportHash[],
 *   }>,
 *   relayUrl?: string,
 *   token?: string,
 *   certificateHash?: string | null,
 *   reconnect?: boolean,
 *   connectTimeoutMs?: number,
 *   useDatagrams?: boolean,
 *   webTransport?: (url: string, options: WebTransportOptions) => WebTransport,
 * }} AttachCallerOptions
 */

/**
 * @param {{relayUrl?: string, url?: string, token: string, certificateHash?: string | null,
 *          serverCertificateHashes?: WebTransportHash[]}} raw
 * @returns {Credentials}
 */
function normalize(raw) {
  const url = raw.url ?? raw.relayUrl;
  if (typeof url !== "string" || !url.startsWith("https://")) {
    throw new TypeError("the relay URL must be a WebTransport https:// URL");
  }
  const hashes = raw.serverCertificateHashes ?? (raw.certificateHash ? [certificateHash(raw.certificateHash)] : []);
  return { url, token: raw.token, serverCertificateHashes: hashes };
}

/** One call's caller-side bridge: publishes uplink, receives downlink. */
export class CallerBridge {
  /**
   * @param {string} callSid
   * @param {MoqtClient} client
   * @param {{codec: string, sampleRate: number, channels: number, frameMs: number}} format
   */
  constructor(callSid, client, format) {
    /** The sid this bridge belongs to. */
    this.callSid = callSid;
    this.client = client;
    this.codec = format.codec;
    this.sampleRate = format.sampleRate;
    this.channels = format.channels;
    this.frameMs = format.frameMs;
    /** @type {FrameCallback | null} */
    this.downlinkCallback = null;
    /** @type {import("./moqt.js").AudioPublication | null} */
    this.uplink = null;
    /** @type {import("./moqt.js").AudioSubscription | null} */
    this.downlink = null;
    this.closed = false;
    /** Called once when the bridge stops for good (closed, the call ended, the token
     * could not be renewed). @type {((error: unknown) => void) | null} */
    this.onEnded = null;
    client.onEnded = (error) => {
      if (this.onEnded !== null) this.onEnded(error);
    };
  }

  /**
   * Push one encoded mic frame (e.g. 20 ms of Opus) to the cloud.
   * @param {Uint8Array | ArrayBuffer} frame
   * @param {number | null} [tsUs] media timestamp in microseconds; omitted: a monotonic clock
   */
  publishUplink(frame, tsUs = null) {
    if (this.closed || this.uplink === null) throw new BridgeClosedError("the bridge is closed");
    this.uplink.write(tsUs, frame);
  }

  /**
   * Swap the consumer of downlink frames mid-call; no frame is lost.
   * @param {FrameCallback | null} callback
   */
  onDownlink(callback) {
    this.downlinkCallback = callback;
  }

  /** The call's downlink track ended (the call is over), or the bridge was closed. */
  get ended() {
    return this.closed || this.client.ended || (this.downlink?.trackEnded ?? false);
  }

  /** Frames and bytes each way, frames dropped, reconnects. @returns {AudioStats} */
  get stats() {
    const s = this.client.stats;
    return { ...s };
  }

  /** A session is set up with the relay right now. */
  get connected() {
    return this.client.connected;
  }

  /** Tear down both tracks and the MoQT session. */
  async close() {
    if (this.closed) return;
    this.closed = true;
    this.uplink?.close();
    this.downlink?.close();
    await this.client.close();
  }
}

/**
 * Open the caller side of a call's audio: publish uplink, subscribe downlink.
 * @param {string} callSid
 * @param {AttachCallerOptions} [options]
 * @returns {Promise<CallerBridge>}
 */
export async function attachCaller(callSid, options = {}) {
  if (typeof callSid !== "string" || !callSid) throw new TypeError("callSid must be a non-empty string");
  const { codec = "opus", sampleRate = 48000, channels = 1, frameMs = 20 } = options;
  if (!AUDIO_CODECS.includes(codec)) throw new TypeError(`codec must be one of ${AUDIO_CODECS.join(", ")}`);
  if (![1, 2].includes(channels)) throw new TypeError("channels must be 1 or 2");
  if (![10, 20, 40, 60].includes(frameMs)) throw new TypeError("frameMs must be 10, 20, 40 or 60");
  /** @type {(fresh: boolean) => Promise<Credentials>} */
  let credentials;
  const provider = options.credentials;
  if (provider !== undefined) {
    credentials = async (fresh) => normalize(await provider(fresh));
  } else {
    if (!options.relayUrl || !options.token) throw new TypeError("pass credentials, or relayUrl and token");
    const fixed = normalize({ relayUrl: options.relayUrl, token: options.token, certificateHash: options.certificateHash });
    credentials = async () => fixed;
  }
  /** @type {string | null} */
  let trackToken = null;
  const client = new MoqtClient({
    credentials: async (fresh) => {
      const got = await credentials(fresh);
      trackToken = got.token ?? null;
      // Tracks carry the token too, as the Python bridge's do; read at each replay.
      if (bridge.uplink !== null) bridge.uplink.token = trackToken;
      if (bridge.downlink !== null) bridge.downlink.token = trackToken;
      return got;
    },
    reconnect: options.reconnect,
    connectTimeoutMs: options.connectTimeoutMs,
    webTransport: options.webTransport,
  });
  const bridge = new CallerBridge(callSid, client, { codec, sampleRate, channels, frameMs });
  bridge.onDownlink(options.onDownlink ?? null);
  await client.connect();
  try {
    bridge.downlink = await client.subscribeAudio(callSid, "downlink", {
      token: trackToken,
      onFrame: (frame, tsUs) => bridge.downlinkCallback?.(frame, tsUs),
    });
    bridge.uplink = await client.publishAudio(callSid, "uplink", {
      token: trackToken,
      useDatagrams: options.useDatagrams ?? false,
    });
  } catch (error) {
    await client.close();
    throw error;
  }
  return bridge;
}

/** The seed's ``v.audioBridge`` surface, for pages: ``audioBridge.attachCaller(sid, opts)``. */
export const audioBridge = Object.freeze({ attachCaller });
