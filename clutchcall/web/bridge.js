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
// The bridge declares the format of what it publishes (codec, sampleRate, channels,
// frameMs: Opus 48 kHz mono 20 ms by default) in an MSF catalog, the track "catalog"
// of ["voice", <sid>, "uplink"], as the Python bridges do; a relay that transcodes
// (the dev engine's) then also sends it the downlink in that format. It reads the
// server side's catalog too: ``bridge.downlinkFormat`` is the format the server
// side declares for downlink (null until, and unless, it declares one).
//
// The browser never holds an API key: ``credentials`` returns a short-lived caller
// bridge token for this call (from your backend, or the dev engine's softphone
// session), the relay's WebTransport URL and, for a self-signed relay, its
// certificate hash. It is called again before each redial, with ``fresh`` true
// when the relay refused the previous token.

import { AUDIO_FORMATS, AudioFormat, CatalogError } from "./catalog.js";
import { BridgeAuthError, BridgeClosedError, BridgeTrackError, MoqtClient, certificateHash } from "./moqt.js";

export const AUDIO_CODECS = Object.freeze(Object.keys(AUDIO_FORMATS));

/** @typedef {import("./moqt.js").AudioStats} AudioStats */
/** @typedef {import("./moqt.js").Credentials} Credentials */
/** @typedef {(frame: Uint8Array, tsUs: number) => void} FrameCallback */
/** @typedef {import("./catalog.js").Catalog} Catalog */

/**
 * How to reach the relay for one call: either fixed values or a function.
 * @typedef {{
 *   codec?: string,
 *   sampleRate?: number,
 *   channels?: number,
 *   frameMs?: number,
 *   onDownlink?: FrameCallback | null,
 *   onDownlinkFormat?: ((format: AudioFormat | null) => void) | null,
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
   * @param {AudioFormat} format
   */
  constructor(callSid, client, format) {
    /** The sid this bridge belongs to. */
    this.callSid = callSid;
    this.client = client;
    /** The format this bridge publishes and declares in its uplink catalog. */
    this.format = format;
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
    /** The server side's catalog (null: the relay refused it). @type {import("./moqt.js").CatalogSubscription | null} */
    this.downlinkCatalog = null;
    /** Called with the downlink's declared format whenever it changes. @type {((format: AudioFormat | null) => void) | null} */
    this.onDownlinkFormat = null;
    /** @type {AudioFormat | null} */
    this.lastDownlinkFormat = null;
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

  /**
   * The format the server side declares for downlink in its catalog (null: none
   * declared, or no catalog). A relay that transcodes, such as the dev engine's,
   * delivers downlink in this bridge's own format whatever this says.
   * @returns {AudioFormat | null}
   */
  get downlinkFormat() {
    return this.downlinkCatalog?.formatOf("downlink") ?? null;
  }

  /** @param {Catalog} catalog */
  downlinkCatalogArrived(catalog) {
    const format = catalog.formatOf("downlink");
    const last = this.lastDownlinkFormat;
    if (format === last || (format !== null && format.equals(last))) return;
    this.lastDownlinkFormat = format;
    if (this.onDownlinkFormat !== null) this.onDownlinkFormat(format);
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
    this.downlinkCatalog?.close();
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
  const format = audioFormat(options);
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
      for (const track of [bridge.uplink, bridge.uplink?.catalog, bridge.downlink, bridge.downlinkCatalog]) {
        if (track) track.token = trackToken;
      }
      return got;
    },
    reconnect: options.reconnect,
    connectTimeoutMs: options.connectTimeoutMs,
    webTransport: options.webTransport,
  });
  const bridge = new CallerBridge(callSid, client, format);
  bridge.onDownlink(options.onDownlink ?? null);
  bridge.onDownlinkFormat = options.onDownlinkFormat ?? null;
  await client.connect();
  // The server side's catalog is optional: a relay that refuses it leaves
  // downlinkFormat null. Asked for alongside the audio tracks, not after them.
  const downlinkCatalog = client
    .subscribeCatalog(callSid, "downlink", {
      token: trackToken,
      onCatalog: (catalog) => bridge.downlinkCatalogArrived(catalog),
    })
    .then(
      (subscription) => ({ subscription, error: null }),
      (/** @type {unknown} */ error) => ({ subscription: null, error }),
    );
  try {
    bridge.downlink = await client.subscribeAudio(callSid, "downlink", {
      token: trackToken,
      onFrame: (frame, tsUs) => bridge.downlinkCallback?.(frame, tsUs),
    });
    bridge.uplink = await client.publishAudio(callSid, "uplink", {
      token: trackToken,
      useDatagrams: options.useDatagrams ?? false,
      format,
    });
    const { subscription, error } = await downlinkCatalog;
    if (error instanceof BridgeTrackError || error instanceof BridgeAuthError) {
      console.info(`clutchcall: no downlink format: ${error.message}`);
    } else if (error !== null) {
      throw error;
    }
    bridge.downlinkCatalog = subscription;
  } catch (error) {
    await client.close();
    throw error;
  }
  return bridge;
}

/**
 * The bridge's AudioFormat from attachCaller's options (TypeError if the codecs
 * cannot speak it). ``sampleRate`` defaults to the codec's: 48000, or 8000 for G.711.
 * @param {{codec?: string, sampleRate?: number, channels?: number, frameMs?: number}} options
 */
function audioFormat({ codec = "opus", sampleRate, channels = 1, frameMs = 20 }) {
  try {
    return new AudioFormat({ codec, sampleRate, channels, frameMs });
  } catch (error) {
    if (error instanceof CatalogError) throw new TypeError(error.message, { cause: error });
    throw error;
  }
}

/** The seed's ``v.audioBridge`` surface, for pages: ``audioBridge.attachCaller(sid, opts)``. */
export const audioBridge = Object.freeze({ attachCaller });
