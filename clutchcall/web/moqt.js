// A MoQT draft-14 client over WebTransport for a call's voice tracks, with reconnect.
//
// The browser counterpart of clutchcall.moqnet.MoqtClient (clutchcall/moqnet/client.py),
// with the same rules on the wire:
//   - namespace ["voice", <call sid>], tracks "uplink" and "downlink";
//   - one encoded frame per object, one object per group, one unidirectional stream
//     per group (SUBGROUP_HEADER 0x19, object 0, LOC timestamp extension 0x10 in
//     microseconds), group IDs counting up across reconnects;
//   - the bridge token in the AUTHORIZATION_TOKEN setup parameter (USE_VALUE), and a
//     track's own token, when given, on its PUBLISH_NAMESPACE or SUBSCRIBE;
//   - a published track may declare its audio format in an MSF catalog, the track
//     "catalog" of ["voice", <sid>, <track>] (catalog.js); any catalog can be read
//     with subscribeCatalog (the relay's merged one at ["voice", <sid>]);
//   - when the link drops, the relay restarts or sends GOAWAY: redial with jittered
//     exponential backoff, set up again (with a fresh token if the relay refused the
//     old one) and replay every PUBLISH_NAMESPACE and SUBSCRIBE. Frames written during
//     an outage wait in a small bounded queue; stale or overflowing ones are dropped
//     and counted.
//
//   const client = new MoqtClient({ url, token, serverCertificateHashes });
//   await client.connect();
//   const uplink = await client.publishAudio(callSid, "uplink", { format: new AudioFormat() });
//   const downlink = await client.subscribeAudio(callSid, "downlink");
//   const catalog = await client.subscribeCatalog(callSid, "downlink");
//   downlink.onFrame = (frame, tsUs) => player.push(tsUs, frame);
//   uplink.write(tsUs, opusFrame);

import {
  CATALOG_TRACK,
  AudioFormat,
  CatalogError,
  catalogNamespace,
  decodeCatalog,
  encodeCatalog,
  encodeCatalogObjectStream,
  sideCatalog,
} from "./catalog.js";
import {
  ControlStreamParser,
  DRAFT_14,
  DataStreamParser,
  MessageType,
  MoqtProtocolError,
  ObjectStatus,
  PublishDoneCode,
  SessionErrorCode,
  SetupParameter,
  SubscribeErrorCode,
  authorizationToken,
  decodeDatagram,
  encodeAudioObjectStream,
  encodeDatagram,
  encodeMessage,
  FilterType,
  timestampFromExtensions,
  utf8,
} from "./wire.js";

/** @typedef {import("./catalog.js").Catalog} Catalog */
/** @typedef {import("./wire.js").Message} Message */
/** @typedef {import("./wire.js").Parameters} Parameters */

export const TRACK_NAMES = Object.freeze(["uplink", "downlink"]);
/** Session close codes that mean "your credentials are not good enough". @type {Set<number>} */
export const AUTH_CLOSE_CODES = new Set([
  SessionErrorCode.UNAUTHORIZED,
  SessionErrorCode.MALFORMED_AUTH_TOKEN,
  SessionErrorCode.UNKNOWN_AUTH_TOKEN_ALIAS,
  SessionErrorCode.EXPIRED_AUTH_TOKEN,
]);
/** SUBSCRIBE_ERROR / PUBLISH_NAMESPACE_ERROR codes that mean "not allowed". @type {Set<number>} */
export const AUTH_REQUEST_CODES = new Set([0x1, 0x10, 0x12]);
/** Streams being written beyond which new frames wait in the queue instead. */
export const MAX_LINK_BACKLOG = 64;
/** Frames held back while waiting for an earlier group that was overtaken. */
export const REORDER_WINDOW = 12;
/** Requests the relay may have in flight before we raise its limit again. */
export const REQUEST_WINDOW = 100;
/** Incoming streams held while their track alias is unknown (SUBSCRIBE_OK not seen). */
export const MAX_PENDING_STREAMS = 64;
/** Largest control message burst buffered from the relay before it is a violation. */
const MAX_CONTROL_BUFFER = 1 << 20;
/** Refusal of a request this client does not serve (NOT_SUPPORTED, as each request's error code). */
const NOT_SUPPORTED = { errorCode: SubscribeErrorCode.NOT_SUPPORTED, reason: "" };
/**
 * The answers to the requests a relay may send this client: namespaces are
 * accepted, tracks and fetches refused.
 * @type {Map<number, Message>}
 */
const PEER_REQUEST_ANSWERS = new Map([
  [MessageType.PUBLISH_NAMESPACE, { type: MessageType.PUBLISH_NAMESPACE_OK }],
  [MessageType.SUBSCRIBE_NAMESPACE, { type: MessageType.SUBSCRIBE_NAMESPACE_OK }],
  [MessageType.PUBLISH, { type: MessageType.PUBLISH_ERROR, ...NOT_SUPPORTED }],
  [MessageType.FETCH, { type: MessageType.FETCH_ERROR, ...NOT_SUPPORTED }],
  [MessageType.TRACK_STATUS, { type: MessageType.TRACK_STATUS_ERROR, ...NOT_SUPPORTED }],
]);

/** Base class of the errors this module raises. */
export class BridgeError extends Error {
  /**
   * @param {string} message
   * @param {{code?: number, reason?: string, cause?: unknown}} [details]
   */
  constructor(message, { code, reason, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "BridgeError";
    /** @type {number | undefined} */
    this.code = code;
    /** @type {string | undefined} */
    this.reason = reason;
  }
}

/** The relay refused the token (the session, a PUBLISH_NAMESPACE or a SUBSCRIBE). */
export class BridgeAuthError extends BridgeError {
  /** @param {string} message @param {{code?: number, reason?: string}} [details] */
  constructor(message, details) {
    super(message, details);
    this.name = "BridgeAuthError";
  }
}

/** The relay refused a track for another reason (no such track...). */
export class BridgeTrackError extends BridgeError {
  /** @param {string} message @param {{code?: number, reason?: string}} [details] */
  constructor(message, details) {
    super(message, details);
    this.name = "BridgeTrackError";
  }
}

/** The relay could not be reached, the TLS handshake or the MoQT setup failed. */
export class BridgeConnectError extends BridgeError {
  /** @param {string} message @param {{code?: number, reason?: string, cause?: unknown}} [details] */
  constructor(message, details) {
    super(message, details);
    this.name = "BridgeConnectError";
  }
}

/** The client, bridge or track was closed. */
export class BridgeClosedError extends BridgeError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "BridgeClosedError";
  }
}

/** The default frame clock: microseconds on the page's monotonic clock (since the epoch). */
export function monotonicUs() {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/**
 * A certificate hash for WebTransport's serverCertificateHashes, from hex.
 * @param {string} hex SHA-256 of the DER certificate, as the dev engine prints it
 * @returns {WebTransportHash}
 */
export function certificateHash(hex) {
  const clean = hex.replace(/[^0-9a-f]/gi, "");
  if (clean.length !== 64) throw new TypeError("a SHA-256 certificate hash has 64 hex digits");
  const value = new Uint8Array(32);
  for (let i = 0; i < 32; i++) value[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return { algorithm: "sha-256", value };
}

/**
 * What the client needs to dial: the relay's WebTransport URL, the bridge token, and
 * (for a self-signed relay such as the dev engine's) the certificate hashes.
 * @typedef {{
 *   url: string,
 *   token?: string | null,
 *   serverCertificateHashes?: WebTransportHash[],
 * }} Credentials
 * @typedef {(fresh: boolean) => Promise<Credentials>} CredentialsProvider
 *   Called before each dial; ``fresh`` is true when the relay refused the last token.
 */

/**
 * @typedef {{
 *   framesIn: number, bytesIn: number, framesOut: number, bytesOut: number,
 *   dropped: number, reconnects: number,
 * }} AudioStats
 */

function zeroStats() {
  return { framesIn: 0, bytesIn: 0, framesOut: 0, bytesOut: 0, dropped: 0, reconnects: 0 };
}

/**
 * @param {string} message
 * @param {number} code
 * @param {string} reason
 */
function refusal(message, code, reason) {
  return AUTH_REQUEST_CODES.has(code)
    ? new BridgeAuthError(message, { code, reason })
    : new BridgeTrackError(message, { code, reason });
}

/** @param {string} track */
function checkTrack(track) {
  if (!TRACK_NAMES.includes(track)) throw new TypeError(`track must be "uplink" or "downlink", not ${track}`);
  return track;
}

/**
 * A map key for a namespace (its fields are text).
 * @param {readonly string[]} namespace
 */
function namespaceKey(namespace) {
  return JSON.stringify(namespace);
}

/**
 * A map key for a full track name.
 * @param {readonly string[]} namespace
 * @param {string} trackName
 */
function trackKey(namespace, trackName) {
  return JSON.stringify([namespace, trackName]);
}

/** @param {string | null | undefined} token @returns {Parameters} */
function tokenParameters(token) {
  return token ? [authorizationToken(token)] : [];
}

/** @param {number} ms @param {AbortSignal} [signal] */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

/** A promise with its resolve function, and whether it has settled. */
class Flag {
  constructor() {
    this.set = false;
    /** @type {() => void} */
    this.resolve = () => {};
    /** @type {Promise<void>} */
    this.promise = new Promise((resolve) => {
      this.resolve = () => {
        this.set = true;
        resolve();
      };
    });
  }
}

/** What every track of the client shares (published or received, audio or catalog). */
class TrackHandle {
  /**
   * @param {MoqtClient} client
   * @param {string} callSid
   * @param {string[]} namespace
   * @param {string} trackName
   * @param {string | null} token
   */
  constructor(client, callSid, namespace, trackName, token) {
    this.client = client;
    this.callSid = callSid;
    this.namespace = namespace;
    this.trackName = trackName;
    /** Bridge token sent with this track's request (read at each (re)start). */
    this.token = token;
    this.closed = false;
    /** @type {BridgeError | null} Why the relay refused this track on the current session. */
    this.error = null;
  }

  /** The track's key in the client's publications or subscriptions. */
  get key() {
    return trackKey(this.namespace, this.trackName);
  }

  /** Mark the track closed; false if it already was. */
  markClosed() {
    const first = !this.closed;
    this.closed = true;
    return first;
  }
}

/** What a publication and a subscription of one voice track share. */
class VoiceTrackHandle extends TrackHandle {
  /**
   * @param {MoqtClient} client
   * @param {string} callSid
   * @param {string} track
   * @param {string | null} token
   */
  constructor(client, callSid, track, token) {
    super(client, callSid, ["voice", callSid], track, token);
    this.track = track;
    /** @type {AudioStats} */
    this.stats = zeroStats();
  }

  /** Count a frame dropped (on this track and on the client). */
  dropped() {
    this.client.stats.dropped++;
    this.stats.dropped++;
  }
}

/** One voice track this client publishes (``client.publishAudio``). */
export class AudioPublication extends VoiceTrackHandle {
  /**
   * @param {MoqtClient} client
   * @param {string} callSid
   * @param {string} track
   * @param {{token?: string | null, useDatagrams?: boolean}} options
   */
  constructor(client, callSid, track, { token = null, useDatagrams = false }) {
    super(client, callSid, track, token);
    this.useDatagrams = useDatagrams;
    /** The catalog declaring this track's format (``publishAudio(..., {format})``). @type {CatalogPublication | null} */
    this.catalog = null;
    /** @type {{queuedAt: number, frame: Uint8Array, tsUs: number}[]} */
    this.queue = [];
    this.nextGroup = 0;
  }

  /** Subscriptions the relay holds on this track in the current session. */
  get subscribers() {
    return this.client.session?.subscribersOf(this)?.length ?? 0;
  }

  /** The format this track declares in its catalog (null: it declares none). */
  get format() {
    return this.catalog?.format ?? null;
  }

  /**
   * Declare another format (a new catalog version): frames written from now on are
   * in ``format``.
   * @param {AudioFormat} format
   */
  setFormat(format) {
    if (this.catalog === null) throw new BridgeError(`${this.track} was published without a format`);
    this.catalog.setFormat(format);
  }

  /** What to call this track in messages. */
  get label() {
    return `${this.track} of ${this.callSid}`;
  }

  /** Frames waiting for the session (or a subscriber) to come back. */
  get queued() {
    return this.queue.length;
  }

  /**
   * Send one encoded frame. Never blocks on the network: while the session is down
   * (or nobody subscribed yet) the frame waits in the bounded outage queue.
   * The argument order is the seed's AudioPublication.write(tsUs, frame).
   * @param {number | null | undefined} tsUs media timestamp in microseconds (null: now)
   * @param {Uint8Array | ArrayBuffer} frame
   */
  write(tsUs, frame) {
    if (this.closed) throw new BridgeClosedError(`the ${this.track} publication was closed`);
    const bytes = frame instanceof Uint8Array ? frame : new Uint8Array(frame);
    const stamp = tsUs === null || tsUs === undefined ? monotonicUs() : Math.round(tsUs);
    if (!(stamp >= 0) || !Number.isSafeInteger(stamp)) throw new RangeError("tsUs must be a non-negative integer");
    if (this.client.ended) {
      this.dropped();
      return;
    }
    this.queue.push({ queuedAt: performance.now(), frame: bytes, tsUs: stamp });
    this.flush();
  }

  flush() {
    const client = this.client;
    while (this.queue.length > client.queueFrames) {
      this.queue.shift();
      this.dropped();
    }
    const session = client.session;
    const subscribers = session?.subscribersOf(this);
    if (!session || !subscribers || !subscribers.length) return;
    const oldest = performance.now() - client.maxQueueAgeMs;
    while (this.queue.length && session.backlog < MAX_LINK_BACKLOG) {
      const item = /** @type {{queuedAt: number, frame: Uint8Array, tsUs: number}} */ (this.queue.shift());
      if (item.queuedAt < oldest) {
        this.dropped();
        continue;
      }
      const groupId = this.nextGroup++;
      for (const sub of subscribers) session.sendFrame(sub, groupId, item.frame, item.tsUs, this.useDatagrams);
      client.stats.framesOut++;
      client.stats.bytesOut += item.frame.length;
      this.stats.framesOut++;
      this.stats.bytesOut += item.frame.length;
    }
  }

  /** Stop publishing (and its catalog): PUBLISH_DONE to subscribers, withdraw the
   * namespace if unused. */
  close() {
    if (!this.markClosed()) return;
    this.client.publications.delete(this.key);
    this.client.session?.withdraw(this);
    this.queue.length = 0;
    this.catalog?.close();
  }
}

/**
 * The MSF catalog of one voice track this client publishes: the track "catalog" of
 * ["voice", <sid>, <track>] (see catalog.js). Every subscriber gets the current
 * version as soon as it subscribes; a new version (``setFormat``), or a new session,
 * takes the next group. While the relay refuses it (``error``), the format is undeclared.
 */
export class CatalogPublication extends TrackHandle {
  /**
   * @param {MoqtClient} client
   * @param {string} callSid
   * @param {string} track "uplink" or "downlink": the track it describes
   * @param {AudioFormat} format
   * @param {{token?: string | null}} options
   */
  constructor(client, callSid, track, format, { token = null }) {
    super(client, callSid, catalogNamespace(callSid, track), CATALOG_TRACK, token);
    this.track = track;
    /** @type {AudioFormat} */
    this.format = format;
    this.payload = encodeCatalog(sideCatalog(callSid, track, format));
    /** The group of the current version: each session and each version takes the next. */
    this.group = 0;
  }

  /** What to call this track in messages. */
  get label() {
    return `the ${this.track} catalog of ${this.callSid}`;
  }

  /**
   * Publish a new version declaring ``format``.
   * @param {AudioFormat} format
   */
  setFormat(format) {
    if (!(format instanceof AudioFormat)) throw new TypeError("format must be an AudioFormat");
    if (this.closed) throw new BridgeClosedError(`${this.label} was closed`);
    if (format.equals(this.format)) return;
    this.format = format;
    this.payload = encodeCatalog(sideCatalog(this.callSid, this.track, format));
    this.group++;
    this.flush();
  }

  /** Send the current version to every subscription of this session that lacks it. */
  flush() {
    const session = this.client.session;
    if (this.closed || !session) return;
    for (const sub of session.subscribersOf(this)) {
      if (sub.sentGroup === this.group) continue;
      sub.sentGroup = this.group;
      session.sendCatalog(sub, this.group, this.payload);
    }
  }

  /** Stop publishing the catalog (PUBLISH_DONE, withdraw its namespace). */
  close() {
    if (!this.markClosed()) return;
    this.client.publications.delete(this.key);
    this.client.session?.withdraw(this);
  }
}

/** One voice track this client receives; set ``onFrame`` to get its frames. */
export class AudioSubscription extends VoiceTrackHandle {
  /**
   * @param {MoqtClient} client
   * @param {string} callSid
   * @param {string} track
   * @param {{token?: string | null, onFrame?: ((frame: Uint8Array, tsUs: number) => void) | null}} options
   */
  constructor(client, callSid, track, { token = null, onFrame = null }) {
    super(client, callSid, track, token);
    /** Called with each frame, in group order. */
    this.onFrame = onFrame;
    this.answered = false;
    /** The relay ended the track for good (PUBLISH_DONE TRACK_ENDED: the call ended). */
    this.trackEnded = false;
    /** Frames that arrived after a later group had already been delivered. */
    this.late = 0;
    /** @type {number | null} */
    this.expected = null;
    /** @type {Map<number, {frame: Uint8Array, tsUs: number}>} */
    this.held = new Map();
  }

  get ended() {
    return this.closed || this.trackEnded || this.client.ended;
  }

  /** A new session: group IDs start afresh (what is held is delivered first). */
  restartOrder() {
    for (const groupId of [...this.held.keys()].sort((a, b) => a - b)) {
      const held = /** @type {{frame: Uint8Array, tsUs: number}} */ (this.held.get(groupId));
      this.deliver(held.frame, held.tsUs);
    }
    this.held.clear();
    this.expected = null;
  }

  /**
   * Put frames back in group order (each travels on its own stream, and streams
   * overtake each other); a gap longer than REORDER_WINDOW frames is skipped.
   * @param {number} groupId
   * @param {Uint8Array} frame
   * @param {number} tsUs
   */
  receive(groupId, frame, tsUs) {
    let expected = this.expected;
    if (expected === null || groupId < expected) {
      if (expected !== null) this.late++;
      else this.expected = groupId + 1;
      this.deliver(frame, tsUs);
      return;
    }
    const held = this.held;
    held.set(groupId, { frame, tsUs });
    while (held.size) {
      if (!held.has(expected)) {
        if (held.size <= REORDER_WINDOW) break;
        expected = Math.min(...held.keys());
      }
      const next = /** @type {{frame: Uint8Array, tsUs: number}} */ (held.get(expected));
      held.delete(expected);
      this.deliver(next.frame, next.tsUs);
      expected++;
    }
    this.expected = expected;
  }

  /** @param {Uint8Array} frame @param {number} tsUs */
  deliver(frame, tsUs) {
    const counters = this.client.stats;
    counters.framesIn++;
    counters.bytesIn += frame.length;
    this.stats.framesIn++;
    this.stats.bytesIn += frame.length;
    const callback = this.onFrame;
    if (callback === null) return;
    try {
      callback(frame, tsUs);
    } catch (error) {
      console.error("clutchcall: the frame callback failed", error);
    }
  }

  /** What to call this track in messages. */
  get label() {
    return `${this.track} of ${this.callSid}`;
  }

  /** UNSUBSCRIBE. */
  close() {
    if (!this.markClosed()) return;
    this.client.subscriptions.delete(this.key);
    this.client.session?.unsubscribe(this);
  }
}

/**
 * A catalog this client receives (``client.subscribeCatalog``): one side's, at
 * ["voice", <sid>, <track>], or the call's merged catalog at ["voice", <sid>].
 * ``latest`` is the newest valid version; a malformed one is counted in
 * ``malformed`` (its error in ``lastError``) and leaves ``latest`` as it was.
 */
export class CatalogSubscription extends TrackHandle {
  /**
   * @param {MoqtClient} client
   * @param {string} callSid
   * @param {string | null} track "uplink", "downlink", or null for the merged catalog
   * @param {{token?: string | null, onCatalog?: ((catalog: Catalog) => void) | null}} options
   */
  constructor(client, callSid, track, { token = null, onCatalog = null }) {
    super(client, callSid, catalogNamespace(callSid, track), CATALOG_TRACK, token);
    /** The side whose catalog this is (null: the call's merged catalog). */
    this.track = track;
    /** Called with each valid version as it arrives. */
    this.onCatalog = onCatalog;
    /** @type {Catalog | null} The newest valid catalog received (null: none yet). */
    this.latest = null;
    /** @type {number | null} The group of ``latest`` in this session (older versions are ignored). */
    this.latestGroup = null;
    /** Catalog objects that were malformed. */
    this.malformed = 0;
    /** @type {CatalogError | null} Why the last malformed one was refused. */
    this.lastError = null;
    this.answered = false;
    /** The publisher ended the catalog for good (PUBLISH_DONE TRACK_ENDED). */
    this.trackEnded = false;
  }

  get ended() {
    return this.closed || this.trackEnded || this.client.ended;
  }

  /** What to call this track in messages. */
  get label() {
    return this.track === null ? `the catalog of ${this.callSid}` : `the ${this.track} catalog of ${this.callSid}`;
  }

  /**
   * The format the latest version declares for voice track ``track`` (null: none).
   * @param {string} track "uplink" or "downlink"
   */
  formatOf(track) {
    return this.latest?.formatOf(track) ?? null;
  }

  /** A new session: its groups are compared among themselves only. */
  restartOrder() {
    this.latestGroup = null;
  }

  /**
   * One catalog object: keep it if it is valid and not older than the latest.
   * @param {number} groupId
   * @param {Uint8Array} payload
   * @param {number} [_tsUs] unused (catalog objects carry no timestamp)
   */
  receive(groupId, payload, _tsUs) {
    if (this.latestGroup !== null && groupId < this.latestGroup) return;
    let catalog;
    try {
      catalog = decodeCatalog(payload);
    } catch (error) {
      if (!(error instanceof CatalogError)) throw error;
      this.malformed++;
      this.lastError = error;
      return;
    }
    this.latest = catalog;
    this.latestGroup = groupId;
    const callback = this.onCatalog;
    if (callback === null) return;
    try {
      callback(catalog);
    } catch (error) {
      console.error("clutchcall: the catalog callback failed", error);
    }
  }

  /** UNSUBSCRIBE. */
  close() {
    if (!this.markClosed()) return;
    this.client.subscriptions.delete(this.key);
    this.client.session?.unsubscribe(this);
  }
}

/**
 * A subscription the relay holds on one of our tracks, in one session.
 * @typedef {{
 *   requestId: number,
 *   alias: number,
 *   forward: boolean,
 *   publication: AudioPublication | CatalogPublication,
 *   sentGroup: number,
 * }} IncomingSubscription
 *   ``sentGroup``: the catalog version (group) it has, -1 for none (catalogs only).
 */

/**
 * One WebTransport session and its MoQT state.
 */
class Session {
  /**
   * @param {MoqtClient} client
   * @param {WebTransport} transport
   */
  constructor(client, transport) {
    this.client = client;
    this.transport = transport;
    this.parser = new ControlStreamParser();
    /** @type {WritableStreamDefaultWriter<Uint8Array> | null} */
    this.control = null;
    /** @type {WritableStreamDefaultWriter<Uint8Array> | null} */
    this.datagramWriter = null;
    this.setupDone = new Flag();
    this.finished = new Flag();
    this.goaway = false;
    /** @type {string | null} */
    this.goawayUrl = null;
    /** @type {{code: number, reason: string} | null} */
    this.closeInfo = null;
    this.backlog = 0;
    // Request IDs: ours even from 0, the relay's odd from 1.
    this.nextRequestId = 0;
    this.peerMaxRequestId = 0;
    this.peerNextRequestId = 1;
    this.grantedLimit = 1 + 2 * REQUEST_WINDOW;
    /** @type {Set<number>} */
    this.peerIdsAhead = new Set();
    /** @type {Message[]} Requests waiting for the relay to raise MAX_REQUEST_ID. */
    this.blocked = [];
    this.blockedSentAt = -1;
    /** @type {Map<number, {kind: string, target?: any}>} */
    this.myRequests = new Map();
    /** @type {Map<string, "pending" | "accepted">} namespaceKey -> state */
    this.announced = new Map();
    /** @type {Map<number, IncomingSubscription>} */
    this.incoming = new Map();
    this.nextAlias = 0;
    /** @type {Map<number, {subscription: AudioSubscription | CatalogSubscription, alias: number | null}>} */
    this.subscribers = new Map();
    /** @type {Map<number, number>} track alias -> request id */
    this.aliases = new Map();
    this.pendingStreams = 0;
    /** @type {Flag} Notified when a SUBSCRIBE_OK arrives (for streams that overtook it). */
    this.aliasArrived = new Flag();
  }

  get established() {
    return this.setupDone.set && !this.finished.set;
  }

  /** @param {AudioPublication | CatalogPublication} publication */
  subscribersOf(publication) {
    if (!this.established || this.announced.get(namespaceKey(publication.namespace)) !== "accepted") return [];
    return [...this.incoming.values()].filter((s) => s.publication === publication && s.forward);
  }

  // -- output -------------------------------------------------------------------------

  /** @param {Message} message */
  send(message) {
    if (this.finished.set || this.control === null) return;
    const bytes = encodeMessage(message);
    this.control.write(bytes).catch(() => {});
  }

  /** @param {Message} message */
  request(message) {
    if (this.nextRequestId >= this.peerMaxRequestId) {
      this.blocked.push(message);
      if (this.blockedSentAt !== this.peerMaxRequestId) {
        this.blockedSentAt = this.peerMaxRequestId;
        this.send({ type: MessageType.REQUESTS_BLOCKED, maximumRequestId: this.peerMaxRequestId });
      }
      return -1;
    }
    const requestId = this.nextRequestId;
    this.nextRequestId += 2;
    this.send({ ...message, requestId });
    return requestId;
  }

  /**
   * @param {{requestId: number, alias: number}} sub
   * @param {number} groupId
   * @param {Uint8Array} payload
   * @param {number} tsUs
   * @param {boolean} useDatagrams
   */
  sendFrame(sub, groupId, payload, tsUs, useDatagrams) {
    if (useDatagrams) {
      const datagram = encodeDatagram({
        trackAlias: sub.alias,
        groupId,
        objectId: 0,
        publisherPriority: 0,
        payload,
        status: null,
        extensions: [[0x10, tsUs]],
        endOfGroup: true,
      });
      this.datagramWriter?.write(datagram).catch(() => {});
      return;
    }
    this.sendStream(encodeAudioObjectStream({ trackAlias: sub.alias, groupId, payload, timestampUs: tsUs }));
  }

  /**
   * One catalog version, alone in its group, on a stream of its own.
   * @param {{alias: number}} sub
   * @param {number} groupId
   * @param {Uint8Array} payload
   */
  sendCatalog(sub, groupId, payload) {
    this.sendStream(encodeCatalogObjectStream({ trackAlias: sub.alias, groupId, payload }));
  }

  /**
   * Write ``bytes`` on a new unidirectional stream and end it.
   * @param {Uint8Array} bytes
   */
  sendStream(bytes) {
    this.backlog++;
    this.transport
      .createUnidirectionalStream()
      .then(async (stream) => {
        const writer = stream.getWriter();
        await writer.write(bytes);
        await writer.close();
      })
      .catch(() => {})
      .finally(() => {
        this.backlog--;
      });
  }

  // -- tracks -------------------------------------------------------------------------

  /** @param {AudioPublication | CatalogPublication} publication */
  startPublication(publication) {
    publication.error = null;
    if (publication instanceof CatalogPublication) publication.group++; // a new session, a new group
    const key = namespaceKey(publication.namespace);
    if (!this.announced.has(key)) {
      this.announced.set(key, "pending");
      const requestId = this.request({
        type: MessageType.PUBLISH_NAMESPACE,
        namespace: publication.namespace,
        parameters: tokenParameters(publication.token),
      });
      if (requestId >= 0) this.myRequests.set(requestId, { kind: "publish_namespace", target: key });
    }
  }

  /** @param {AudioSubscription | CatalogSubscription} subscription */
  startSubscription(subscription) {
    if (subscription.trackEnded) return;
    subscription.error = null;
    subscription.restartOrder();
    // A catalog is read from group 0 on, so that a relay holding the current version
    // sends it too (as clutchcall.moqt.CatalogSubscriber does); audio from now on.
    const catalog = subscription instanceof CatalogSubscription;
    const requestId = this.request({
      type: MessageType.SUBSCRIBE,
      namespace: subscription.namespace,
      trackName: subscription.trackName,
      subscriberPriority: catalog ? 0 : 128,
      groupOrder: 1,
      forward: 1,
      filterType: catalog ? FilterType.ABSOLUTE_START : FilterType.LARGEST_OBJECT,
      start: catalog ? { group: 0, object: 0 } : null,
      parameters: tokenParameters(subscription.token),
    });
    if (requestId >= 0) {
      this.myRequests.set(requestId, { kind: "subscribe" });
      this.subscribers.set(requestId, { subscription, alias: null });
    }
  }

  /** @param {AudioPublication | CatalogPublication} publication */
  withdraw(publication) {
    if (!this.established) return;
    for (const [requestId, sub] of this.incoming) {
      if (sub.publication !== publication) continue;
      this.incoming.delete(requestId);
      this.send({
        type: MessageType.PUBLISH_DONE,
        requestId,
        statusCode: PublishDoneCode.TRACK_ENDED,
        streamCount: 0,
        reason: "track ended",
      });
    }
    const key = namespaceKey(publication.namespace);
    const stillUsed = [...this.client.publications.values()].some((p) => namespaceKey(p.namespace) === key);
    if (!stillUsed && this.announced.get(key) === "accepted") {
      this.announced.delete(key);
      this.send({ type: MessageType.PUBLISH_NAMESPACE_DONE, namespace: publication.namespace });
    }
  }

  /** @param {AudioSubscription | CatalogSubscription} subscription */
  unsubscribe(subscription) {
    for (const [requestId, entry] of this.subscribers) {
      if (entry.subscription !== subscription) continue;
      this.subscribers.delete(requestId);
      if (entry.alias !== null) this.aliases.delete(entry.alias);
      this.myRequests.delete(requestId);
      if (this.established) this.send({ type: MessageType.UNSUBSCRIBE, requestId });
    }
  }

  finishTracks() {
    for (const publication of this.client.publications.values()) this.withdraw(publication);
    for (const entry of [...this.subscribers.values()]) this.unsubscribe(entry.subscription);
  }

  // -- input --------------------------------------------------------------------------

  /**
   * @param {number} requestId
   */
  acceptPeerRequestId(requestId) {
    const low = this.peerNextRequestId;
    if (requestId % 2 !== low % 2) {
      throw new MoqtProtocolError(`Request ID ${requestId} has the wrong parity`, SessionErrorCode.INVALID_REQUEST_ID);
    }
    if (requestId < low || this.peerIdsAhead.has(requestId)) {
      throw new MoqtProtocolError(`Request ID ${requestId} was already used`, SessionErrorCode.INVALID_REQUEST_ID);
    }
    if (requestId >= this.grantedLimit) {
      throw new MoqtProtocolError(
        `Request ID ${requestId} is not below ${this.grantedLimit}`,
        SessionErrorCode.TOO_MANY_REQUESTS,
      );
    }
    this.peerIdsAhead.add(requestId);
    let next = low;
    while (this.peerIdsAhead.has(next)) {
      this.peerIdsAhead.delete(next);
      next += 2;
    }
    this.peerNextRequestId = next;
    if ((this.grantedLimit - next) / 2 < REQUEST_WINDOW / 2 + 1) {
      this.grantedLimit = next + 2 * REQUEST_WINDOW;
      this.send({ type: MessageType.MAX_REQUEST_ID, requestId: this.grantedLimit });
    }
  }

  /**
   * @param {number} requestId
   * @param {string} kind
   * @param {string} name
   */
  myRequest(requestId, kind, name) {
    const live = this.myRequests.get(requestId);
    if (live !== undefined && live.kind === kind) return live;
    if (live === undefined && requestId % 2 === 0 && requestId < this.nextRequestId) return null;
    throw new MoqtProtocolError(`${name} for Request ID ${requestId}, which is not a ${kind}`);
  }

  /**
   * ``myRequest`` for an answer that ends the request (which is then forgotten).
   * @param {number} requestId
   * @param {string} kind
   * @param {string} name
   */
  endMyRequest(requestId, kind, name) {
    const request = this.myRequest(requestId, kind, name);
    if (request !== null) this.myRequests.delete(requestId);
    return request;
  }

  /** @param {Uint8Array} data */
  receiveControl(data) {
    if (this.parser.buffered + data.length > MAX_CONTROL_BUFFER) {
      throw new MoqtProtocolError("control message too long");
    }
    for (const message of this.parser.feed(data)) this.handle(message);
  }

  /** @param {Message} msg */
  handle(msg) {
    const client = this.client;
    if (msg.type === MessageType.SERVER_SETUP) {
      if (this.setupDone.set) throw new MoqtProtocolError("unexpected SERVER_SETUP");
      if (msg.version !== DRAFT_14) {
        throw new MoqtProtocolError(
          `server chose version 0x${msg.version.toString(16)}, which was not offered`,
          SessionErrorCode.VERSION_NEGOTIATION_FAILED,
        );
      }
      for (const [kind, value] of msg.parameters) {
        if (kind === SetupParameter.PATH || kind === SetupParameter.AUTHORITY) {
          throw new MoqtProtocolError("PATH or AUTHORITY from a server");
        }
        if (kind === SetupParameter.MAX_REQUEST_ID && typeof value === "number") this.peerMaxRequestId = value;
      }
      this.setupDone.resolve();
      client.onSessionReady(this);
      return;
    }
    if (!this.setupDone.set) {
      throw new MoqtProtocolError(`${msg.type === MessageType.CLIENT_SETUP ? "CLIENT_SETUP" : "a message"} before SETUP`);
    }
    switch (msg.type) {
      case MessageType.MAX_REQUEST_ID: {
        if (msg.requestId <= this.peerMaxRequestId) throw new MoqtProtocolError("MAX_REQUEST_ID did not increase");
        this.peerMaxRequestId = msg.requestId;
        const waiting = this.blocked;
        this.blocked = [];
        for (const message of waiting) {
          const requestId = this.request(message);
          if (requestId < 0) continue;
          if (message.type === MessageType.PUBLISH_NAMESPACE) {
            this.myRequests.set(requestId, { kind: "publish_namespace", target: namespaceKey(message.namespace) });
          } else if (message.type === MessageType.SUBSCRIBE) {
            const subscription = client.subscriptions.get(trackKey(message.namespace, message.trackName));
            if (subscription) {
              this.myRequests.set(requestId, { kind: "subscribe" });
              this.subscribers.set(requestId, { subscription, alias: null });
            }
          }
        }
        return;
      }
      case MessageType.REQUESTS_BLOCKED:
        this.grantedLimit = this.peerNextRequestId + 2 * REQUEST_WINDOW;
        this.send({ type: MessageType.MAX_REQUEST_ID, requestId: this.grantedLimit });
        return;
      case MessageType.GOAWAY:
        if (this.goaway) throw new MoqtProtocolError("a second GOAWAY");
        this.goaway = true;
        if (msg.newSessionUri) this.goawayUrl = msg.newSessionUri;
        this.close(SessionErrorCode.NO_ERROR, "going away");
        return;
      case MessageType.SUBSCRIBE: {
        this.acceptPeerRequestId(msg.requestId);
        const publication = client.publications.get(trackKey(msg.namespace, msg.trackName));
        if (publication === undefined || this.announced.get(namespaceKey(publication.namespace)) === undefined) {
          this.send({
            type: MessageType.SUBSCRIBE_ERROR,
            requestId: msg.requestId,
            errorCode: SubscribeErrorCode.TRACK_DOES_NOT_EXIST,
            reason: "not published here",
          });
          return;
        }
        const alias = this.nextAlias++;
        this.incoming.set(msg.requestId, {
          requestId: msg.requestId,
          alias,
          forward: msg.forward === 1,
          publication,
          sentGroup: -1,
        });
        this.send({
          type: MessageType.SUBSCRIBE_OK,
          requestId: msg.requestId,
          trackAlias: alias,
          expires: 0,
          groupOrder: 1,
          largest: null,
          parameters: [],
        });
        publication.flush();
        return;
      }
      case MessageType.SUBSCRIBE_UPDATE: {
        this.acceptPeerRequestId(msg.requestId);
        const sub = this.incoming.get(msg.subscriptionRequestId);
        if (sub) {
          sub.forward = msg.forward === 1;
          sub.publication.flush();
        }
        return;
      }
      case MessageType.UNSUBSCRIBE:
        this.incoming.delete(msg.requestId);
        return;
      case MessageType.PUBLISH_NAMESPACE_OK: {
        const request = this.myRequest(msg.requestId, "publish_namespace", "PUBLISH_NAMESPACE_OK");
        if (request === null) return;
        this.myRequests.set(msg.requestId, { kind: "publish_namespace_accepted", target: request.target });
        this.announced.set(request.target, "accepted");
        for (const publication of client.publications.values()) {
          if (namespaceKey(publication.namespace) === request.target) publication.flush();
        }
        client.changed();
        return;
      }
      case MessageType.PUBLISH_NAMESPACE_ERROR: {
        const request = this.endMyRequest(msg.requestId, "publish_namespace", "PUBLISH_NAMESPACE_ERROR");
        if (request === null) return;
        this.announced.delete(request.target);
        for (const publication of client.publications.values()) {
          if (namespaceKey(publication.namespace) !== request.target) continue;
          publication.error = refusal(
            `the relay refused to let this client publish ${publication.label}: ${msg.reason || "no reason given"}`,
            msg.errorCode,
            msg.reason,
          );
        }
        client.changed();
        return;
      }
      case MessageType.PUBLISH_NAMESPACE_CANCEL: {
        const key = namespaceKey(msg.namespace);
        if (!this.announced.delete(key)) return;
        for (const publication of client.publications.values()) {
          if (namespaceKey(publication.namespace) !== key) continue;
          publication.error = refusal(`the relay cancelled ${publication.label}`, msg.errorCode, msg.reason);
        }
        client.changed();
        return;
      }
      case MessageType.SUBSCRIBE_OK: {
        if (this.myRequest(msg.requestId, "subscribe", "SUBSCRIBE_OK") === null) return;
        const entry = this.subscribers.get(msg.requestId);
        if (!entry) return;
        if (entry.alias !== null) throw new MoqtProtocolError("a second SUBSCRIBE_OK for one SUBSCRIBE");
        if (this.aliases.has(msg.trackAlias)) {
          throw new MoqtProtocolError(
            `track alias ${msg.trackAlias} is already in use`,
            SessionErrorCode.DUPLICATE_TRACK_ALIAS,
          );
        }
        entry.alias = msg.trackAlias;
        this.aliases.set(msg.trackAlias, msg.requestId);
        const subscription = entry.subscription;
        subscription.answered = true;
        if (subscription instanceof AudioSubscription && msg.largest !== null && subscription.expected === null) {
          subscription.expected = msg.largest.group + 1;
        }
        const arrived = this.aliasArrived;
        this.aliasArrived = new Flag();
        arrived.resolve();
        client.changed();
        return;
      }
      case MessageType.SUBSCRIBE_ERROR: {
        if (this.endMyRequest(msg.requestId, "subscribe", "SUBSCRIBE_ERROR") === null) return;
        const entry = this.subscribers.get(msg.requestId);
        this.subscribers.delete(msg.requestId);
        if (entry) {
          entry.subscription.error = refusal(
            `the relay refused the subscription to ${entry.subscription.label}: ${msg.reason || "no reason given"}`,
            msg.errorCode,
            msg.reason,
          );
        }
        client.changed();
        return;
      }
      case MessageType.PUBLISH_DONE: {
        if (this.endMyRequest(msg.requestId, "subscribe", "PUBLISH_DONE") === null) return;
        const entry = this.subscribers.get(msg.requestId);
        if (entry && msg.statusCode === PublishDoneCode.TRACK_ENDED) {
          this.subscribers.delete(msg.requestId);
          entry.subscription.trackEnded = true;
          client.changed();
        }
        return;
      }
      case MessageType.PUBLISH_NAMESPACE:
      case MessageType.SUBSCRIBE_NAMESPACE:
      case MessageType.PUBLISH:
      case MessageType.FETCH:
      case MessageType.TRACK_STATUS: {
        this.acceptPeerRequestId(msg.requestId);
        const answer = /** @type {Message} */ (PEER_REQUEST_ANSWERS.get(msg.type));
        this.send({ ...answer, requestId: msg.requestId });
        return;
      }
      case MessageType.PUBLISH_NAMESPACE_DONE:
      case MessageType.UNSUBSCRIBE_NAMESPACE:
      case MessageType.FETCH_CANCEL:
        return;
      default:
        throw new MoqtProtocolError("an answer to a request this client never sends");
    }
  }

  /**
   * An incoming unidirectional stream: one object per stream on the voice tracks.
   * @param {ReadableStream<Uint8Array>} stream
   */
  async readStream(stream) {
    const reader = stream.getReader();
    const parser = new DataStreamParser(1 << 16);
    /** @type {number | null} */
    let requestId = null;
    let groupId = 0;
    let pending = false;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        const items = parser.feed(value ?? new Uint8Array(0), done);
        for (const item of items) {
          if (item.kind === "fetch") {
            throw new MoqtProtocolError("a fetch stream, but this client never fetches");
          }
          if (item.kind === "subgroup") {
            groupId = item.groupId;
            requestId = this.aliases.get(item.trackAlias) ?? null;
            // A stream may overtake the SUBSCRIBE_OK that names its alias: wait for it,
            // a bounded number of streams and only while a SUBSCRIBE is unanswered.
            while (requestId === null && [...this.subscribers.values()].some((e) => e.alias === null)) {
              if (this.pendingStreams >= MAX_PENDING_STREAMS) break;
              this.pendingStreams++;
              pending = true;
              await Promise.race([this.aliasArrived.promise, this.finished.promise]);
              this.pendingStreams--;
              pending = false;
              requestId = this.aliases.get(item.trackAlias) ?? null;
              if (this.finished.set) break;
            }
            if (requestId === null) {
              await reader.cancel().catch(() => {});
              return;
            }
            continue;
          }
          if (requestId === null || item.status !== ObjectStatus.NORMAL || !item.payload.length) continue;
          const entry = this.subscribers.get(requestId);
          if (!entry) continue;
          const tsUs = timestampFromExtensions(item.extensions) ?? monotonicUs();
          entry.subscription.receive(groupId, item.payload, tsUs);
        }
        if (done) return;
      }
    } catch (error) {
      if (error instanceof MoqtProtocolError) this.fail(error);
    } finally {
      if (pending) this.pendingStreams--;
      reader.releaseLock();
    }
  }

  /** @param {Uint8Array} data */
  receiveDatagram(data) {
    const datagram = decodeDatagram(data);
    const requestId = this.aliases.get(datagram.trackAlias);
    if (requestId === undefined || datagram.status !== null || !datagram.payload.length) return;
    const entry = this.subscribers.get(requestId);
    if (!entry) return;
    const tsUs = timestampFromExtensions(datagram.extensions) ?? monotonicUs();
    entry.subscription.receive(datagram.groupId, datagram.payload, tsUs);
  }

  /** @param {MoqtProtocolError} error */
  fail(error) {
    console.warn(`clutchcall: the relay broke the protocol: ${error.reason}`);
    this.close(error.code, error.reason);
  }

  /** @param {number} code @param {string} reason */
  close(code, reason) {
    if (this.finished.set) return;
    this.closeInfo ??= { code, reason };
    this.finished.resolve();
    try {
      this.transport.close({ closeCode: code, reason });
    } catch {
      // already closed
    }
    this.client.changed();
  }
}

/**
 * @typedef {{
 *   url?: string,
 *   token?: string | null,
 *   serverCertificateHashes?: WebTransportHash[],
 *   credentials?: CredentialsProvider,
 *   reconnect?: boolean,
 *   connectTimeoutMs?: number,
 *   queueFrames?: number,
 *   maxQueueAgeMs?: number,
 *   backoffMs?: [number, number],
 *   implementation?: string,
 *   webTransport?: (url: string, options: WebTransportOptions) => WebTransport,
 * }} MoqtClientOptions
 */

/** A MoQT client for a call's voice tracks over WebTransport, with automatic reconnect. */
export class MoqtClient {
  /** @param {MoqtClientOptions} options */
  constructor(options) {
    const { url, token = null, serverCertificateHashes, credentials } = options;
    if (credentials === undefined) {
      if (url === undefined) throw new TypeError("pass url (and token) or credentials");
      const fixed = { url, token, serverCertificateHashes };
      this.credentials = async () => fixed;
    } else {
      if (url !== undefined || options.token !== undefined) {
        throw new TypeError("pass either url/token or credentials, not both");
      }
      this.credentials = credentials;
    }
    this.reconnect = options.reconnect ?? true;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 10000;
    this.queueFrames = options.queueFrames ?? 25;
    this.maxQueueAgeMs = options.maxQueueAgeMs ?? 500;
    this.backoffMs = options.backoffMs ?? [50, 2000];
    this.implementation = options.implementation ?? "clutchcall-web";
    this.webTransport =
      options.webTransport ?? ((/** @type {string} */ u, /** @type {WebTransportOptions} */ o) => new WebTransport(u, o));
    /** @type {AudioStats} */
    this.stats = zeroStats();
    /** @type {Map<string, AudioPublication | CatalogPublication>} trackKey -> track */
    this.publications = new Map();
    /** @type {Map<string, AudioSubscription | CatalogSubscription>} trackKey -> track */
    this.subscriptions = new Map();
    /** @type {Session | null} */
    this.session = null;
    this.started = false;
    this.closing = false;
    this.ended = false;
    this.readyOnce = false;
    /** @type {string | null} */
    this.goawayUrl = null;
    /** @type {unknown} */
    this.firstError = null;
    this.wake = new AbortController();
    this.done = new Flag();
    this.changedFlag = new Flag();
    /** Called whenever a session is set up; true on reconnects. @type {((reconnect: boolean) => void) | null} */
    this.onSetup = null;
    /** Called once when the client has stopped for good. @type {((error: unknown) => void) | null} */
    this.onEnded = null;
  }

  /** A session is set up right now. */
  get connected() {
    return this.session !== null && this.session.established;
  }

  changed() {
    const flag = this.changedFlag;
    this.changedFlag = new Flag();
    flag.resolve();
  }

  /**
   * Dial and set up the first session; rejects if that fails (BridgeAuthError: the
   * relay refused the token; BridgeConnectError: unreachable, TLS, setup timeout;
   * or what the credentials function threw).
   */
  async connect() {
    if (this.started) throw new BridgeError("the client is already connected");
    this.started = true;
    this.run().catch((error) => console.error("clutchcall: the MoQT client failed", error));
    while (!this.readyOnce && !this.ended) await this.changedFlag.promise;
    if (this.firstError !== null) {
      const error = this.firstError;
      this.firstError = null;
      throw error;
    }
  }

  /** Finish the tracks (PUBLISH_DONE, UNSUBSCRIBE), close the session, stop. */
  async close() {
    if (!this.started) {
      this.ended = true;
      return;
    }
    this.closing = true;
    this.wake.abort();
    this.changed();
    await this.done.promise;
  }

  /**
   * Announce ``voice/<callSid>`` and serve ``track`` to whoever subscribes. Resolves
   * once the relay accepted the namespace.
   *
   * ``format`` (an AudioFormat): declare the track's audio format in an MSF catalog,
   * the track "catalog" of ["voice", <callSid>, <track>] (catalog.js), so that
   * subscribers and the platform's media gateway know how to decode it. A relay
   * that refuses the catalog's namespace only leaves the format undeclared
   * (``publication.catalog.error``), as with the Python MoqtClient.
   * @param {string} callSid
   * @param {string} track
   * @param {{token?: string | null, useDatagrams?: boolean, format?: AudioFormat | null}} [options]
   */
  async publishAudio(callSid, track, options = {}) {
    this.requireRunning();
    const { format = null, ...trackOptions } = options;
    if (format !== null && !(format instanceof AudioFormat)) throw new TypeError("format must be an AudioFormat");
    const publication = new AudioPublication(this, callSid, checkTrack(track), trackOptions);
    const key = trackKey(publication.namespace, publication.trackName);
    if (this.publications.has(key)) throw new BridgeError(`${track} of ${callSid} is already published`);
    this.publications.set(key, publication);
    /** @type {CatalogPublication | null} */
    let catalog = null;
    if (format !== null) {
      catalog = new CatalogPublication(this, callSid, track, format, { token: trackOptions.token });
      publication.catalog = catalog;
      this.publications.set(trackKey(catalog.namespace, catalog.trackName), catalog);
    }
    if (this.connected) {
      const session = /** @type {Session} */ (this.session);
      session.startPublication(publication);
      if (catalog !== null) session.startPublication(catalog);
    }
    try {
      await this.waitAnswer(() => this.session?.announced.get(namespaceKey(publication.namespace)) === "accepted", publication);
      if (catalog !== null) {
        const accepted = () => this.session?.announced.get(namespaceKey(catalog.namespace)) === "accepted";
        await this.waitAnswer(() => accepted() || catalog.error !== null, catalog, { raiseRefusal: false });
        if (catalog.error !== null) console.info(`clutchcall: ${catalog.error.message}`);
      }
    } catch (error) {
      publication.close();
      throw error;
    }
    return publication;
  }

  /**
   * SUBSCRIBE to ``voice/<callSid>/<track>``; resolves once the relay accepted.
   * @param {string} callSid
   * @param {string} track
   * @param {{token?: string | null, onFrame?: ((frame: Uint8Array, tsUs: number) => void) | null}} [options]
   */
  async subscribeAudio(callSid, track, options = {}) {
    this.requireRunning();
    const subscription = new AudioSubscription(this, callSid, checkTrack(track), options);
    return this.subscribe(subscription);
  }

  /**
   * SUBSCRIBE to a catalog: ``track`` null for the call's merged catalog (["voice",
   * <callSid>], served by the platform's relay), or "uplink" / "downlink" for the one
   * that side publishes (["voice", <callSid>, <track>]). Resolves once the relay
   * accepted; ``latest`` and ``onCatalog`` give the versions as they arrive.
   * @param {string} callSid
   * @param {string | null} [track]
   * @param {{token?: string | null, onCatalog?: ((catalog: Catalog) => void) | null}} [options]
   */
  async subscribeCatalog(callSid, track = null, options = {}) {
    this.requireRunning();
    const subscription = new CatalogSubscription(this, callSid, track === null ? null : checkTrack(track), options);
    return this.subscribe(subscription);
  }

  /**
   * @template {AudioSubscription | CatalogSubscription} T
   * @param {T} subscription
   * @returns {Promise<T>}
   */
  async subscribe(subscription) {
    const key = trackKey(subscription.namespace, subscription.trackName);
    if (this.subscriptions.has(key)) throw new BridgeError(`${subscription.label} is already subscribed`);
    this.subscriptions.set(key, subscription);
    if (this.connected) /** @type {Session} */ (this.session).startSubscription(subscription);
    await this.waitAnswer(() => subscription.answered, subscription);
    return subscription;
  }

  requireRunning() {
    if (!this.started) throw new BridgeError("connect the client first");
    if (this.closing || this.ended) throw new BridgeClosedError("the client is closed");
  }

  /**
   * Wait until ``ready()``; a track the relay refuses (or does not answer for in
   * time, or a client that ends first) is closed again and the reason thrown.
   * @param {() => boolean} ready
   * @param {AudioPublication | AudioSubscription | CatalogPublication | CatalogSubscription} track
   * @param {{raiseRefusal?: boolean}} [options] false: return when the relay refused
   */
  async waitAnswer(ready, track, { raiseRefusal = true } = {}) {
    try {
      const deadline = performance.now() + this.connectTimeoutMs;
      while (!ready()) {
        if (track.error !== null) {
          if (!raiseRefusal) return;
          throw track.error;
        }
        if (this.ended) throw new BridgeClosedError("the client ended before the relay answered");
        const left = deadline - performance.now();
        if (left <= 0) throw new BridgeConnectError("the relay did not answer in time");
        await Promise.race([this.changedFlag.promise, sleep(Math.min(left, 250))]);
      }
      if (track.error !== null && raiseRefusal) throw track.error;
    } catch (error) {
      track.close();
      throw error;
    }
  }

  /** @param {Session} session */
  onSessionReady(session) {
    for (const publication of this.publications.values()) session.startPublication(publication);
    for (const subscription of this.subscriptions.values()) session.startSubscription(subscription);
    const reconnect = this.readyOnce;
    if (reconnect) this.stats.reconnects++;
    this.readyOnce = true;
    this.changed();
    if (this.onSetup !== null) this.onSetup(reconnect);
  }

  // -- the connection manager ---------------------------------------------------------

  async run() {
    try {
      await this.runSessions();
    } catch (error) {
      if (!this.readyOnce && this.firstError === null) this.firstError = error;
    } finally {
      this.ended = true;
      this.session = null;
      this.done.resolve();
      this.changed();
      if (this.onEnded !== null) {
        try {
          this.onEnded(this.firstError);
        } catch (error) {
          console.error("clutchcall: onEnded failed", error);
        }
      }
    }
  }

  async runSessions() {
    const [initial, cap] = this.backoffMs;
    let delay = initial;
    let fresh = false;
    while (!this.closing) {
      let retryNow = false;
      try {
        retryNow = await this.sessionOnce(fresh);
        fresh = false;
        delay = initial;
      } catch (error) {
        if (error instanceof BridgeAuthError) {
          if (!this.readyOnce || fresh) {
            this.fail(error);
            return;
          }
          fresh = true;
          retryNow = true;
        } else if (error instanceof BridgeConnectError) {
          if (!this.readyOnce) {
            this.fail(error);
            return;
          }
        } else {
          // The credentials function failed (the call ended, the page's backend is down).
          if (!this.readyOnce || (error instanceof Error && /** @type {any} */ (error).fatal)) {
            this.fail(error);
            return;
          }
          console.info("clutchcall: could not refresh the bridge token:", error);
        }
      }
      if (this.closing || !this.reconnect) return;
      if (!retryNow) {
        await sleep(delay * (0.5 + Math.random() * 0.5), this.wake.signal);
        delay = Math.min(delay * 2, cap);
      }
    }
  }

  /** @param {unknown} error */
  fail(error) {
    if (!this.readyOnce) this.firstError = error;
    else console.warn("clutchcall: the MoQT client stopped:", error);
  }

  /**
   * One connection: dial, set up, serve until it ends. Resolves true to redial at once.
   * @param {boolean} fresh
   */
  async sessionOnce(fresh) {
    const credentials = await this.credentials(fresh);
    const url = this.goawayUrl ?? credentials.url;
    /** @type {WebTransportOptions} */
    const options = { allowPooling: false, congestionControl: "low-latency" };
    if (credentials.serverCertificateHashes?.length) {
      options.serverCertificateHashes = credentials.serverCertificateHashes;
    }
    let transport;
    try {
      transport = this.webTransport(url, options);
    } catch (error) {
      throw new BridgeConnectError(`cannot open a WebTransport session to ${url}: ${error}`, { cause: error });
    }
    const session = new Session(this, transport);
    transport.closed.then(
      (info) => {
        session.closeInfo ??= { code: info.closeCode ?? 0, reason: info.reason ?? "" };
        session.finished.resolve();
        this.changed();
      },
      (error) => {
        session.closeInfo ??= { code: -1, reason: String(error) };
        session.finished.resolve();
        this.changed();
      },
    );
    const timer = setTimeout(() => session.close(SessionErrorCode.CONTROL_MESSAGE_TIMEOUT, "setup timed out"),
      this.connectTimeoutMs);
    try {
      await Promise.race([transport.ready, session.finished.promise]);
      if (session.finished.set) {
        throw new BridgeConnectError(`cannot reach the relay at ${url}: ${session.closeInfo?.reason ?? "closed"}`);
      }
      const control = await transport.createBidirectionalStream();
      session.control = control.writable.getWriter();
      /** @type {Parameters} */
      const params = [[SetupParameter.MAX_REQUEST_ID, session.grantedLimit]];
      params.push([SetupParameter.MOQT_IMPLEMENTATION, utf8(this.implementation)]);
      params.push(...tokenParameters(credentials.token));
      session.send({
        type: MessageType.CLIENT_SETUP,
        versions: [DRAFT_14],
        parameters: params,
      });
      this.session = session;
      this.readControl(session, control.readable);
      this.acceptStreams(session);
      this.readDatagrams(session);
      await Promise.race([session.setupDone.promise, session.finished.promise]);
    } catch (error) {
      clearTimeout(timer);
      this.session = null;
      session.close(SessionErrorCode.INTERNAL_ERROR, "setup failed");
      if (error instanceof BridgeError) throw error;
      throw new BridgeConnectError(`cannot reach the relay at ${url}: ${error}`, { cause: error });
    }
    clearTimeout(timer);
    if (!session.setupDone.set) {
      this.session = null;
      const info = session.closeInfo ?? { code: -1, reason: "closed" };
      if (AUTH_CLOSE_CODES.has(info.code)) {
        throw new BridgeAuthError(`the relay refused the session: ${info.reason || "unauthorized"}`, info);
      }
      throw new BridgeConnectError(`the relay ended the session during setup: ${info.reason}`, info);
    }
    await Promise.race([session.finished.promise, this.closingSignal()]);
    if (!session.finished.set) {
      session.finishTracks();
      await session.control?.ready.catch(() => {});
      session.close(SessionErrorCode.NO_ERROR, "closing");
    }
    this.session = null;
    if (session.goawayUrl) this.goawayUrl = session.goawayUrl;
    this.changed();
    return session.goaway;
  }

  closingSignal() {
    return new Promise((resolve) => {
      if (this.closing) resolve(undefined);
      else this.wake.signal.addEventListener("abort", () => resolve(undefined));
    });
  }

  /**
   * @param {Session} session
   * @param {ReadableStream<Uint8Array>} readable
   */
  async readControl(session, readable) {
    const reader = readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          session.close(SessionErrorCode.PROTOCOL_VIOLATION, "the control stream was closed");
          return;
        }
        session.receiveControl(value);
      }
    } catch (error) {
      if (error instanceof MoqtProtocolError) session.fail(error);
      else session.close(SessionErrorCode.NO_ERROR, "link lost");
    }
  }

  /** @param {Session} session */
  async acceptStreams(session) {
    const reader = session.transport.incomingUnidirectionalStreams.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        session.readStream(value);
      }
    } catch {
      // the session ended
    }
  }

  /** @param {Session} session */
  async readDatagrams(session) {
    const datagrams = session.transport.datagrams;
    try {
      const writable = /** @type {any} */ (datagrams).createWritable?.() ?? datagrams.writable;
      session.datagramWriter = writable.getWriter();
    } catch {
      session.datagramWriter = null;
    }
    const reader = datagrams.readable.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        session.receiveDatagram(value);
      }
    } catch (error) {
      if (error instanceof MoqtProtocolError) session.fail(error);
    }
  }
}

