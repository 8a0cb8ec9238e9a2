// The audio format on the wire: MSF catalogs of the voice tracks (no I/O here).
//
// The browser counterpart of clutchcall.moqt.catalog (clutchcall/moqt/catalog.py),
// byte for byte: both are checked against the catalog vectors in
// tests/moqt/wire_vectors.json.
//
// Each side of a call declares the format of the track it publishes in a MoQ
// Streaming Format catalog (draft-ietf-moq-msf): the track "catalog" of a namespace
// only that side announces, ["voice", <sid>, "uplink"] for the caller side and
// ["voice", <sid>, "downlink"] for the server side. The relay serves the call's
// merged catalog (both tracks) at ["voice", <sid>] / "catalog". One catalog is one
// object (compact JSON in UTF-8), alone in its group; a new version takes the next
// group.
//
//   const fmt = new AudioFormat({ codec: "opus" });           // 48 kHz mono, 20 ms
//   const payload = encodeCatalog(sideCatalog(callSid, "uplink", fmt));
//   decodeCatalog(payload).formatOf("uplink");                // an AudioFormat equal to fmt
//
// decodeCatalog is strict and bounded: anything but a well-formed catalog of at most
// MAX_CATALOG_BYTES throws CatalogError. Fields it does not know are ignored.

import { concat, encodeSubgroupHeader, encodeSubgroupObject, utf8 } from "./wire.js";

/** The MSF catalog's track name. */
export const CATALOG_TRACK = "catalog";
/** The MSF version written ("draft-NN" strings and draft-00's number 1 are read). */
export const MSF_VERSION = "draft-01";
/** A catalog object larger than this (in bytes) is refused unread. */
export const MAX_CATALOG_BYTES = 16 * 1024;
/** A catalog describing more tracks than this is refused. */
export const MAX_CATALOG_TRACKS = 16;
/** A string in a catalog longer than this (in characters) is refused. */
export const MAX_STRING = 256;
/** Arrays and objects nested deeper than this are refused (a catalog's tracks are at 3). */
export const MAX_DEPTH = 32;
/** Catalog objects go out ahead of the audio they describe (lower is more urgent). */
export const CATALOG_PRIORITY = 0;
/** The frame duration assumed when a catalog gives no maxGroupDuration. */
const DEFAULT_FRAME_MS = 20;

/** Codec name -> MSF (WebCodecs codec registry) codec string. */
export const CODEC_NAMES = Object.freeze({ opus: "opus", pcm16: "pcm-s16", g711_ulaw: "ulaw", g711_alaw: "alaw" });
/** @type {Map<string, string>} MSF codec string -> codec name. */
const CODECS_BY_MSF = new Map(Object.entries(CODEC_NAMES).map(([name, msf]) => [msf, name]));

/**
 * What each codec supports: the table of clutchcall.audio.make_codec, which the
 * Python bridge checks at attach.
 * @typedef {{sampleRates: readonly number[], channels: readonly number[],
 *            frameMs: readonly number[], defaultSampleRate: number}} FormatRule
 * @type {Readonly<Record<string, FormatRule>>}
 */
export const AUDIO_FORMATS = Object.freeze({
  opus: Object.freeze({ sampleRates: [48000], channels: [1, 2], frameMs: [10, 20, 40, 60], defaultSampleRate: 48000 }),
  pcm16: Object.freeze({
    sampleRates: [8000, 12000, 16000, 24000, 32000, 44100, 48000],
    channels: [1, 2],
    frameMs: [10, 20, 30, 40, 60],
    defaultSampleRate: 48000,
  }),
  g711_ulaw: Object.freeze({ sampleRates: [8000], channels: [1], frameMs: [10, 20, 30, 40, 60], defaultSampleRate: 8000 }),
  g711_alaw: Object.freeze({ sampleRates: [8000], channels: [1], frameMs: [10, 20, 30, 40, 60], defaultSampleRate: 8000 }),
});

const VOICE_TRACKS = ["uplink", "downlink"];

/** A catalog (or an audio format) that is malformed, too large or unsupported. */
export class CatalogError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "CatalogError";
  }
}

/** @param {unknown} value */
function show(value) {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** One audio track's format: what a bridge's codec / sampleRate / channels / frameMs say. */
export class AudioFormat {
  /**
   * Checks the combination against what the codecs support (AUDIO_FORMATS) and
   * throws CatalogError otherwise. ``sampleRate`` defaults to the codec's default
   * (48000, or 8000 for G.711).
   * @param {{codec?: string, sampleRate?: number, channels?: number, frameMs?: number}} [fields]
   */
  constructor({ codec = "opus", sampleRate, channels = 1, frameMs = 20 } = {}) {
    const rule = typeof codec === "string" && Object.hasOwn(AUDIO_FORMATS, codec) ? AUDIO_FORMATS[codec] : null;
    if (rule === null) {
      throw new CatalogError(`codec must be one of ${Object.keys(AUDIO_FORMATS).join(", ")}, got ${show(codec)}`);
    }
    const rate = sampleRate ?? rule.defaultSampleRate;
    for (const [name, value, allowed] of /** @type {[string, unknown, readonly number[]][]} */ ([
      ["sampleRate", rate, rule.sampleRates],
      ["channels", channels, rule.channels],
      ["frameMs", frameMs, rule.frameMs],
    ])) {
      if (typeof value !== "number" || !allowed.includes(value)) {
        throw new CatalogError(`${codec} ${name} must be one of ${allowed.join(", ")}, got ${show(value)}`);
      }
    }
    /** @type {string} */
    this.codec = codec;
    /** @type {number} */
    this.sampleRate = rate;
    /** @type {number} */
    this.channels = channels;
    /** @type {number} */
    this.frameMs = frameMs;
    Object.freeze(this);
  }

  /** The codec string in an MSF catalog (WebCodecs registry). */
  get msfCodec() {
    return /** @type {Record<string, string>} */ (CODEC_NAMES)[this.codec];
  }

  /** Samples per channel in one frame. */
  get samplesPerFrame() {
    return Math.floor((this.sampleRate * this.frameMs) / 1000);
  }

  /** Bits per second: nominal for Opus (32 kbit/s per channel), exact otherwise. */
  get bitrate() {
    if (this.codec === "opus") return 32000 * this.channels;
    return this.sampleRate * this.channels * (this.codec === "pcm16" ? 16 : 8);
  }

  /** @param {AudioFormat | null | undefined} other */
  equals(other) {
    return (
      other instanceof AudioFormat &&
      other.codec === this.codec &&
      other.sampleRate === this.sampleRate &&
      other.channels === this.channels &&
      other.frameMs === this.frameMs
    );
  }

  toString() {
    return `${this.codec} ${this.sampleRate} Hz ${this.channels} ch ${this.frameMs} ms`;
  }
}

/** The SDK's default format (Opus, 48 kHz, mono, 20 ms frames). */
export const DEFAULT_FORMAT = new AudioFormat();

/**
 * The fields of one catalog track entry that this module uses (null: absent).
 * @typedef {{
 *   name: string,
 *   namespace?: string | null,
 *   packaging?: string,
 *   isLive?: boolean,
 *   role?: string | null,
 *   codec?: string | null,
 *   samplerate?: number | null,
 *   channelConfig?: string | null,
 *   bitrate?: number | null,
 *   maxGroupDuration?: number | null,
 * }} CatalogTrackFields
 */

/** One track entry of a catalog. */
export class CatalogTrack {
  /** @param {CatalogTrackFields} fields */
  constructor({
    name,
    namespace = null,
    packaging = "loc",
    isLive = true,
    role = null,
    codec = null,
    samplerate = null,
    channelConfig = null,
    bitrate = null,
    maxGroupDuration = null,
  }) {
    this.name = name;
    /** The track's namespace as written ("voice/<sid>"); null: the catalog's own. */
    this.namespace = namespace;
    this.packaging = packaging;
    this.isLive = isLive;
    this.role = role;
    /** The MSF codec string ("opus", "pcm-s16", "ulaw", "alaw"...). */
    this.codec = codec;
    this.samplerate = samplerate;
    this.channelConfig = channelConfig;
    this.bitrate = bitrate;
    this.maxGroupDuration = maxGroupDuration;
    Object.freeze(this);
  }

  /**
   * The entry of a LOC audio track in ``format``.
   * @param {string} name
   * @param {AudioFormat} format
   * @param {string | null} [namespace]
   */
  static audio(name, format, namespace = null) {
    return new CatalogTrack({
      name,
      namespace,
      role: "audio",
      codec: format.msfCodec,
      samplerate: format.sampleRate,
      channelConfig: String(format.channels),
      bitrate: format.bitrate,
      maxGroupDuration: format.frameMs,
    });
  }

  /**
   * The AudioFormat this entry describes; null if it is no audio track in a format
   * the SDK speaks (another codec or packaging, no sample rate...).
   * @returns {AudioFormat | null}
   */
  get format() {
    const codec = CODECS_BY_MSF.get(this.codec ?? "");
    const channels = this.channelConfig;
    if (
      codec === undefined ||
      this.packaging !== "loc" ||
      this.samplerate === null ||
      channels === null ||
      !/^[0-9]+$/.test(channels)
    ) {
      return null;
    }
    try {
      return new AudioFormat({
        codec,
        sampleRate: this.samplerate,
        channels: Number(channels),
        frameMs: this.maxGroupDuration ?? DEFAULT_FRAME_MS,
      });
    } catch (error) {
      if (error instanceof CatalogError) return null;
      throw error;
    }
  }

  /** The entry as MSF JSON, fields in the order the Python encoder writes them. */
  toJSON() {
    /** @type {Record<string, unknown>} */
    const entry = { name: this.name };
    if (this.namespace !== null) entry.namespace = this.namespace;
    entry.packaging = this.packaging;
    entry.isLive = this.isLive;
    for (const [key, value] of /** @type {[string, unknown][]} */ ([
      ["role", this.role],
      ["codec", this.codec],
      ["samplerate", this.samplerate],
      ["channelConfig", this.channelConfig],
      ["bitrate", this.bitrate],
      ["maxGroupDuration", this.maxGroupDuration],
    ])) {
      if (value !== null) entry[key] = value;
    }
    return entry;
  }
}

/** An MSF catalog: the tracks a publisher (or a call) offers. */
export class Catalog {
  /**
   * @param {readonly CatalogTrack[]} [tracks]
   * @param {string} [version]
   */
  constructor(tracks = [], version = MSF_VERSION) {
    /** @type {readonly CatalogTrack[]} */
    this.tracks = Object.freeze([...tracks]);
    this.version = version;
    Object.freeze(this);
  }

  /**
   * The entry of track ``name`` (in ``namespace``, if given), or null.
   * @param {string} name
   * @param {string | null} [namespace]
   */
  track(name, namespace = null) {
    for (const entry of this.tracks) {
      if (entry.name === name && (namespace === null || entry.namespace === null || entry.namespace === namespace)) {
        return entry;
      }
    }
    return null;
  }

  /**
   * The declared format of voice track ``track`` (null: not declared).
   * @param {string} track "uplink" or "downlink"
   */
  formatOf(track) {
    return this.track(checkVoiceTrack(track))?.format ?? null;
  }
}

/** @param {string} track */
function checkVoiceTrack(track) {
  if (!VOICE_TRACKS.includes(track)) throw new TypeError(`track must be "uplink" or "downlink", not ${show(track)}`);
  return track;
}

/**
 * The catalog one side publishes for its track of ``callSid``.
 * @param {string} callSid
 * @param {string} track "uplink" or "downlink"
 * @param {AudioFormat} format
 */
export function sideCatalog(callSid, track, format) {
  return new Catalog([CatalogTrack.audio(checkVoiceTrack(track), format, `voice/${callSid}`)]);
}

/**
 * Where a catalog of ``callSid`` lives: the call's namespace (the merged catalog),
 * or ["voice", <sid>, <track>] (the catalog of one side's track).
 * @param {string} callSid
 * @param {string | null} [track]
 * @returns {string[]}
 */
export function catalogNamespace(callSid, track = null) {
  return track === null ? ["voice", callSid] : ["voice", callSid, checkVoiceTrack(track)];
}

/** @param {string} char */
function escapeUnicode(char) {
  return `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/**
 * The catalog as one object's payload: compact JSON, ASCII only (every other
 * character escaped), the bytes the Python encoder writes.
 * @param {Catalog} catalog
 * @returns {Uint8Array}
 */
export function encodeCatalog(catalog) {
  const text = JSON.stringify({ version: catalog.version, tracks: catalog.tracks }).replace(
    /[\u007f-\uffff]/g,
    escapeUnicode,
  );
  const data = utf8(text);
  if (data.length > MAX_CATALOG_BYTES) {
    throw new CatalogError(`the catalog is ${data.length} bytes, more than ${MAX_CATALOG_BYTES}`);
  }
  return data;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * A JSON object's own field (a key such as "__proto__" is plain data, never inherited).
 * @param {Record<string, unknown>} object
 * @param {string} key
 */
function own(object, key) {
  return Object.hasOwn(object, key) ? object[key] : undefined;
}

/** @param {unknown} value @returns {value is Record<string, unknown>} */
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Parse one catalog object; CatalogError for anything malformed.
 *
 * Bounds: at most MAX_CATALOG_BYTES, MAX_DEPTH levels of nesting, MAX_CATALOG_TRACKS
 * tracks and MAX_STRING characters per string. Delta updates (deltaUpdate) are
 * refused: the voice tracks publish whole catalogs only.
 * @param {Uint8Array | ArrayBuffer} data
 * @returns {Catalog}
 */
export function decodeCatalog(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.length > MAX_CATALOG_BYTES) {
    throw new CatalogError(`a catalog of ${bytes.length} bytes is larger than ${MAX_CATALOG_BYTES}`);
  }
  /** @type {unknown} */
  let document;
  try {
    const text = strictUtf8.decode(bytes);
    checkDepth(text);
    document = JSON.parse(text);
  } catch (error) {
    throw new CatalogError(`the catalog is not valid JSON: ${/** @type {Error} */ (error).message}`);
  }
  if (!isObject(document)) throw new CatalogError("a catalog must be a JSON object");
  let version = own(document, "version");
  if (version === 1) version = "draft-00";
  if (typeof version !== "string" || !/^draft-[0-9]+$/.test(version) || version.length > 12) {
    throw new CatalogError(`unsupported catalog version ${show(version)}`);
  }
  if (Object.hasOwn(document, "deltaUpdate")) {
    throw new CatalogError("delta updates are not supported; publish whole catalogs");
  }
  const tracks = own(document, "tracks");
  if (!Array.isArray(tracks)) throw new CatalogError("a catalog needs a 'tracks' array");
  if (tracks.length > MAX_CATALOG_TRACKS) {
    throw new CatalogError(`a catalog of ${tracks.length} tracks has more than ${MAX_CATALOG_TRACKS}`);
  }
  return new Catalog(tracks.map(decodeTrack), version);
}

/**
 * Refuse nesting deeper than MAX_DEPTH before parsing (brackets inside strings do
 * not count). Malformed text is left to JSON.parse.
 * @param {string} text
 */
function checkDepth(text) {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_DEPTH) throw new Error(`arrays and objects nest deeper than ${MAX_DEPTH}`);
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
}

/** @param {unknown} entry */
function decodeTrack(entry) {
  if (!isObject(entry)) throw new CatalogError("each catalog track must be a JSON object");
  const name = /** @type {string} */ (string(entry, "name", true));
  if (!name) throw new CatalogError("a track name must not be empty");
  const packaging = /** @type {string} */ (string(entry, "packaging", true));
  const isLive = Object.hasOwn(entry, "isLive") ? entry.isLive : false;
  if (typeof isLive !== "boolean") throw new CatalogError(`isLive of ${show(name)} must be true or false`);
  const track = new CatalogTrack({
    name,
    namespace: string(entry, "namespace"),
    packaging,
    isLive,
    role: string(entry, "role"),
    codec: string(entry, "codec"),
    samplerate: integer(entry, "samplerate", 1, 1_000_000),
    channelConfig: string(entry, "channelConfig"),
    bitrate: integer(entry, "bitrate", 0, 10 ** 10),
    maxGroupDuration: integer(entry, "maxGroupDuration", 1, 3_600_000),
  });
  // MSF: an audio track with a codec must carry its sample rate and channels.
  if (
    track.role === "audio" &&
    track.packaging === "loc" &&
    track.codec !== null &&
    (track.samplerate === null || track.channelConfig === null)
  ) {
    throw new CatalogError(`audio track ${show(name)} needs samplerate and channelConfig`);
  }
  return track;
}

/**
 * @param {Record<string, unknown>} entry
 * @param {string} key
 * @param {boolean} [required]
 * @returns {string | null}
 */
function string(entry, key, required = false) {
  const value = own(entry, key);
  if (value === undefined || value === null) {
    if (required) throw new CatalogError(`a catalog track needs '${key}'`);
    return null;
  }
  if (typeof value !== "string") throw new CatalogError(`'${key}' must be a string, got ${typeof value}`);
  // Characters are code points, as Python counts them (a surrogate pair is one).
  if (value.length > MAX_STRING) {
    let length = 0;
    for (let i = 0; i < value.length; i += /** @type {number} */ (value.codePointAt(i)) > 0xffff ? 2 : 1) {
      if (++length > MAX_STRING) throw new CatalogError(`'${key}' is longer than ${MAX_STRING} characters`);
    }
  }
  return value;
}

/**
 * @param {Record<string, unknown>} entry
 * @param {string} key
 * @param {number} low
 * @param {number} high
 * @returns {number | null}
 */
function integer(entry, key, low, high) {
  const value = own(entry, key);
  if (value === undefined || value === null) return null;
  if (typeof value !== "number" || !Number.isInteger(value) || value < low || value > high) {
    throw new CatalogError(`'${key}' must be an integer in ${low}..${high}, got ${show(value)}`);
  }
  return value;
}

/**
 * One catalog version as its subgroup stream: SUBGROUP_HEADER type 0x18 (end of
 * group, no extensions) at CATALOG_PRIORITY, then object 0 with the payload. The
 * bytes clutchcall.moqt.CatalogPublisher.send writes.
 * @param {{trackAlias: number, groupId: number, payload: Uint8Array}} object
 */
export function encodeCatalogObjectStream({ trackAlias, groupId, payload }) {
  const header = encodeSubgroupHeader({
    trackAlias,
    groupId,
    subgroupId: 0,
    publisherPriority: CATALOG_PRIORITY,
    hasExtensions: false,
    endOfGroup: true,
  });
  return concat(header, encodeSubgroupObject(0, payload, { hasExtensions: false }));
}
