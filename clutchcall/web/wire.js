// MoQT draft-14 wire codec for the browser: varints, control messages, subgroup
// streams and object datagrams. The same byte layout as the Python core
// (clutchcall/moqt/wire.py, messages.py, data.py); both are checked against the
// shared vectors in tests/moqt/wire_vectors.json.
//
// Integers are JavaScript numbers: a varint above Number.MAX_SAFE_INTEGER (2^53 - 1)
// is refused as a protocol violation, since no honest voice-track peer sends one.

/** draft-ietf-moq-transport-14. */
export const DRAFT_14 = 0xff00000e;
export const SUPPORTED_VERSIONS = [DRAFT_14];

export const MAX_KVP_VALUE_LENGTH = 0xffff;
export const MAX_NAMESPACE_FIELDS = 32;
export const MAX_FULL_TRACK_NAME_LENGTH = 4096;
export const MAX_REASON_PHRASE_LENGTH = 1024;
export const MAX_GOAWAY_URI_LENGTH = 8192;
export const MAX_MESSAGE_PAYLOAD = 0xffff;
/** Largest object payload accepted on a stream (an Opus frame is well under 2 KiB). */
export const DEFAULT_MAX_OBJECT_SIZE = 1 << 20;
export const MAX_EXTENSIONS_LENGTH = 2 * (MAX_KVP_VALUE_LENGTH + 16);

/** LOC Timestamp extension header (draft-ietf-moq-loc-04), microseconds. */
export const TIMESTAMP_EXTENSION = 0x10;
/** The Timestamp id of draft-ietf-moq-loc-03, read but never written. */
export const LEGACY_TIMESTAMP_EXTENSION = 0x06;

export const SetupParameter = Object.freeze({
  PATH: 0x01,
  MAX_REQUEST_ID: 0x02,
  AUTHORIZATION_TOKEN: 0x03,
  MAX_AUTH_TOKEN_CACHE_SIZE: 0x04,
  AUTHORITY: 0x05,
  MOQT_IMPLEMENTATION: 0x07,
});

export const MessageParameter = Object.freeze({
  DELIVERY_TIMEOUT: 0x02,
  AUTHORIZATION_TOKEN: 0x03,
  MAX_CACHE_DURATION: 0x04,
});

export const ObjectStatus = Object.freeze({
  NORMAL: 0x0,
  DOES_NOT_EXIST: 0x1,
  END_OF_GROUP: 0x3,
  END_OF_TRACK: 0x4,
});
/** @type {Set<number>} */
const STATUSES = new Set(Object.values(ObjectStatus));

/** Session termination codes (draft-14 section 3.4) this module uses. */
export const SessionErrorCode = Object.freeze({
  NO_ERROR: 0x0,
  INTERNAL_ERROR: 0x1,
  UNAUTHORIZED: 0x2,
  PROTOCOL_VIOLATION: 0x3,
  INVALID_REQUEST_ID: 0x4,
  DUPLICATE_TRACK_ALIAS: 0x5,
  KEY_VALUE_FORMATTING_ERROR: 0x6,
  TOO_MANY_REQUESTS: 0x7,
  CONTROL_MESSAGE_TIMEOUT: 0x10,
  VERSION_NEGOTIATION_FAILED: 0x15,
  MALFORMED_AUTH_TOKEN: 0x16,
  UNKNOWN_AUTH_TOKEN_ALIAS: 0x17,
  EXPIRED_AUTH_TOKEN: 0x18,
});

export const SubscribeErrorCode = Object.freeze({
  INTERNAL_ERROR: 0x0,
  UNAUTHORIZED: 0x1,
  NOT_SUPPORTED: 0x3,
  TRACK_DOES_NOT_EXIST: 0x4,
});

export const PublishDoneCode = Object.freeze({
  INTERNAL_ERROR: 0x0,
  UNAUTHORIZED: 0x1,
  TRACK_ENDED: 0x2,
  SUBSCRIPTION_ENDED: 0x3,
  GOING_AWAY: 0x4,
  EXPIRED: 0x5,
});

export const FilterType = Object.freeze({
  NEXT_GROUP_START: 0x1,
  LARGEST_OBJECT: 0x2,
  ABSOLUTE_START: 0x3,
  ABSOLUTE_RANGE: 0x4,
});

export const FetchType = Object.freeze({ STANDALONE: 0x1, RELATIVE_JOINING: 0x2, ABSOLUTE_JOINING: 0x3 });

/** The peer broke the protocol; ``code`` is the session termination code to close with. */
export class MoqtProtocolError extends Error {
  /**
   * @param {string} reason
   * @param {number} [code]
   */
  constructor(reason, code = SessionErrorCode.PROTOCOL_VIOLATION) {
    super(reason);
    this.name = "MoqtProtocolError";
    this.code = code;
    this.reason = reason;
  }
}

/** The caller passed a value the wire format cannot carry. */
export class MoqtUsageError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "MoqtUsageError";
  }
}

/** Thrown by {@link Reader} when its input ends in the middle of a field. */
export class NeedMoreData extends Error {
  constructor() {
    super("need more data");
    this.name = "NeedMoreData";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

/** @param {string} text */
export function utf8(text) {
  return encoder.encode(text);
}

/** @param {Uint8Array} bytes */
export function fromUtf8(bytes) {
  return decoder.decode(bytes);
}

/**
 * @typedef {[number, number | Uint8Array]} KeyValuePair
 *   Even types carry an integer, odd types carry bytes.
 * @typedef {KeyValuePair[]} Parameters
 * @typedef {{group: number, object: number}} Location
 */

// --- Writing -------------------------------------------------------------------------

/** Appends fields to a growing byte buffer. */
export class Writer {
  constructor(initial = 64) {
    /** @type {Uint8Array} */
    this.buffer = new Uint8Array(initial);
    this.length = 0;
  }

  /** @param {number} extra */
  reserve(extra) {
    const needed = this.length + extra;
    if (needed <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < needed) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
  }

  /** @param {number} value */
  varint(value) {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new MoqtUsageError(`varint must be a non-negative safe integer: ${value}`);
    }
    this.reserve(8);
    const b = this.buffer;
    let p = this.length;
    if (value < 0x40) {
      b[p++] = value;
    } else if (value < 0x4000) {
      b[p++] = 0x40 | (value >> 8);
      b[p++] = value & 0xff;
    } else if (value < 0x40000000) {
      b[p++] = 0x80 | (value >>> 24);
      b[p++] = (value >>> 16) & 0xff;
      b[p++] = (value >>> 8) & 0xff;
      b[p++] = value & 0xff;
    } else {
      const high = Math.floor(value / 0x100000000);
      const low = value >>> 0;
      b[p++] = 0xc0 | (high >>> 24);
      b[p++] = (high >>> 16) & 0xff;
      b[p++] = (high >>> 8) & 0xff;
      b[p++] = high & 0xff;
      b[p++] = low >>> 24;
      b[p++] = (low >>> 16) & 0xff;
      b[p++] = (low >>> 8) & 0xff;
      b[p++] = low & 0xff;
    }
    this.length = p;
    return this;
  }

  /** @param {number} value */
  uint8(value) {
    if (!Number.isInteger(value) || value < 0 || value > 0xff) {
      throw new MoqtUsageError(`8-bit field out of range: ${value}`);
    }
    this.reserve(1);
    this.buffer[this.length++] = value;
    return this;
  }

  /** @param {Uint8Array} bytes */
  raw(bytes) {
    this.reserve(bytes.length);
    this.buffer.set(bytes, this.length);
    this.length += bytes.length;
    return this;
  }

  /** A length-prefixed byte string. @param {Uint8Array} bytes */
  bytes(bytes) {
    return this.varint(bytes.length).raw(bytes);
  }

  /** @param {KeyValuePair} pair */
  keyValuePair([kind, value]) {
    if (kind % 2 === 0) {
      if (typeof value !== "number") {
        throw new MoqtUsageError(`key-value type 0x${kind.toString(16)} is even and needs a number`);
      }
      return this.varint(kind).varint(value);
    }
    if (!(value instanceof Uint8Array)) {
      throw new MoqtUsageError(`key-value type 0x${kind.toString(16)} is odd and needs bytes`);
    }
    if (value.length > MAX_KVP_VALUE_LENGTH) {
      throw new MoqtUsageError(`key-value value of ${value.length} bytes is too long`);
    }
    return this.varint(kind).bytes(value);
  }

  /** @param {Parameters} params */
  parameters(params) {
    this.varint(params.length);
    for (const pair of params) this.keyValuePair(pair);
    return this;
  }

  /**
   * @param {string[]} namespace
   * @param {boolean} [allowEmpty]
   */
  namespace(namespace, allowEmpty = false) {
    if (namespace.length > MAX_NAMESPACE_FIELDS || (namespace.length === 0 && !allowEmpty)) {
      throw new MoqtUsageError(`namespace must have 1..32 fields, has ${namespace.length}`);
    }
    this.varint(namespace.length);
    for (const field of namespace) this.bytes(utf8(field));
    return this;
  }

  /** @param {string} reason */
  reason(reason) {
    const raw = utf8(reason);
    if (raw.length > MAX_REASON_PHRASE_LENGTH) {
      throw new MoqtUsageError(`reason phrase of ${raw.length} bytes is too long`);
    }
    return this.bytes(raw);
  }

  /** @param {Location} location */
  location(location) {
    return this.varint(location.group).varint(location.object);
  }

  /** @returns {Uint8Array} a copy of what was written */
  finish() {
    return this.buffer.slice(0, this.length);
  }
}

/** @param {number} value */
export function encodeVarint(value) {
  return new Writer(8).varint(value).finish();
}

// --- Reading -------------------------------------------------------------------------

/** A cursor over bytes; throws {@link NeedMoreData} when a field runs past the end. */
export class Reader {
  /**
   * @param {Uint8Array} data
   * @param {number} [pos]
   * @param {number} [end]
   */
  constructor(data, pos = 0, end = data.length) {
    this.data = data;
    this.pos = pos;
    this.end = end;
  }

  get remaining() {
    return this.end - this.pos;
  }

  atEnd() {
    return this.pos >= this.end;
  }

  /** @returns {number} */
  varint() {
    const d = this.data;
    const p = this.pos;
    if (p >= this.end) throw new NeedMoreData();
    const first = d[p];
    const size = 1 << (first >> 6);
    if (p + size > this.end) throw new NeedMoreData();
    let value = first & 0x3f;
    if (size === 8) {
      // The high 32 bits must stay below 2^21 for the value to fit a safe integer.
      let high = value;
      for (let i = p + 1; i < p + 4; i++) high = high * 256 + d[i];
      if (high > 0x1fffff) {
        throw new MoqtProtocolError("varint exceeds 2^53 - 1, which this client does not handle");
      }
      let low = 0;
      for (let i = p + 4; i < p + 8; i++) low = low * 256 + d[i];
      this.pos = p + 8;
      return high * 0x100000000 + low;
    }
    for (let i = p + 1; i < p + size; i++) value = value * 256 + d[i];
    this.pos = p + size;
    return value;
  }

  uint8() {
    if (this.pos >= this.end) throw new NeedMoreData();
    return this.data[this.pos++];
  }

  uint16() {
    if (this.pos + 2 > this.end) throw new NeedMoreData();
    const value = (this.data[this.pos] << 8) | this.data[this.pos + 1];
    this.pos += 2;
    return value;
  }

  /** @param {number} length */
  bytes(length) {
    if (this.pos + length > this.end) throw new NeedMoreData();
    const value = this.data.slice(this.pos, this.pos + length);
    this.pos += length;
    return value;
  }

  /**
   * A varint length and that many bytes; lengths over ``limit`` are refused before
   * waiting for the bytes, so a peer cannot make the reader buffer without bound.
   * @param {number} limit
   * @param {string} what
   */
  lengthPrefixed(limit, what) {
    const length = this.varint();
    if (length > limit) throw new MoqtProtocolError(`${what} length ${length} exceeds ${limit}`);
    return this.bytes(length);
  }

  /** @returns {KeyValuePair} */
  keyValuePair() {
    const kind = this.varint();
    if (kind % 2 === 0) return [kind, this.varint()];
    return [kind, this.lengthPrefixed(MAX_KVP_VALUE_LENGTH, "key-value pair")];
  }

  /** @returns {Parameters} */
  parameters() {
    const count = this.varint();
    if (count > this.remaining) {
      throw new MoqtProtocolError(`parameter count ${count} exceeds message size`);
    }
    /** @type {Parameters} */
    const params = [];
    for (let i = 0; i < count; i++) params.push(this.keyValuePair());
    return params;
  }

  /** @param {boolean} [allowEmpty] */
  namespace(allowEmpty = false) {
    const count = this.varint();
    if (count > MAX_NAMESPACE_FIELDS || (count === 0 && !allowEmpty)) {
      throw new MoqtProtocolError(`track namespace has ${count} fields`);
    }
    /** @type {string[]} */
    const fields = [];
    let total = 0;
    for (let i = 0; i < count; i++) {
      const field = this.lengthPrefixed(MAX_FULL_TRACK_NAME_LENGTH, "namespace field");
      total += field.length;
      if (total > MAX_FULL_TRACK_NAME_LENGTH) throw new MoqtProtocolError("track namespace is too long");
      fields.push(fromUtf8(field));
    }
    return fields;
  }

  /** @param {string[]} namespace */
  trackName(namespace) {
    const used = namespace.reduce((sum, f) => sum + utf8(f).length, 0);
    return fromUtf8(this.lengthPrefixed(MAX_FULL_TRACK_NAME_LENGTH - used, "full track name"));
  }

  reason() {
    return fromUtf8(this.lengthPrefixed(MAX_REASON_PHRASE_LENGTH, "reason phrase"));
  }

  /** @returns {Location} */
  location() {
    return { group: this.varint(), object: this.varint() };
  }
}

/**
 * Decode a complete block of back-to-back key-value pairs (object extension headers).
 * @param {Uint8Array} data
 * @returns {Parameters}
 */
export function decodeKeyValuePairs(data) {
  const reader = new Reader(data);
  /** @type {Parameters} */
  const pairs = [];
  try {
    while (!reader.atEnd()) pairs.push(reader.keyValuePair());
  } catch (error) {
    if (error instanceof NeedMoreData) {
      throw new MoqtProtocolError("truncated key-value pair", SessionErrorCode.KEY_VALUE_FORMATTING_ERROR);
    }
    throw error;
  }
  return pairs;
}

/**
 * An AUTHORIZATION_TOKEN parameter carrying ``token`` directly (alias type USE_VALUE).
 * @param {string} token
 * @param {number} [tokenType]
 * @returns {KeyValuePair}
 */
export function authorizationToken(token, tokenType = 0) {
  const value = new Writer().varint(0x3).varint(tokenType).raw(utf8(token)).finish();
  return [SetupParameter.AUTHORIZATION_TOKEN, value];
}

/**
 * The LOC timestamp (microseconds) among extension headers, or null.
 * @param {Parameters} extensions
 * @returns {number | null}
 */
export function timestampFromExtensions(extensions) {
  /** @type {number | null} */
  let legacy = null;
  for (const [kind, value] of extensions) {
    if (typeof value !== "number") continue;
    if (kind === TIMESTAMP_EXTENSION) return value;
    if (kind === LEGACY_TIMESTAMP_EXTENSION && legacy === null) legacy = value;
  }
  return legacy;
}

// --- Control messages ----------------------------------------------------------------

/**
 * A control message: ``type`` names it, the other fields depend on the type (the
 * field names are those of the Python dataclasses, in camelCase).
 * @typedef {{type: number, [field: string]: any}} Message
 */

export const MessageType = Object.freeze({
  CLIENT_SETUP: 0x20,
  SERVER_SETUP: 0x21,
  GOAWAY: 0x10,
  MAX_REQUEST_ID: 0x15,
  REQUESTS_BLOCKED: 0x1a,
  SUBSCRIBE: 0x03,
  SUBSCRIBE_OK: 0x04,
  SUBSCRIBE_ERROR: 0x05,
  SUBSCRIBE_UPDATE: 0x02,
  UNSUBSCRIBE: 0x0a,
  PUBLISH_DONE: 0x0b,
  PUBLISH: 0x1d,
  PUBLISH_OK: 0x1e,
  PUBLISH_ERROR: 0x1f,
  FETCH: 0x16,
  FETCH_OK: 0x18,
  FETCH_ERROR: 0x19,
  FETCH_CANCEL: 0x17,
  TRACK_STATUS: 0x0d,
  TRACK_STATUS_OK: 0x0e,
  TRACK_STATUS_ERROR: 0x0f,
  PUBLISH_NAMESPACE: 0x06,
  PUBLISH_NAMESPACE_OK: 0x07,
  PUBLISH_NAMESPACE_ERROR: 0x08,
  PUBLISH_NAMESPACE_DONE: 0x09,
  PUBLISH_NAMESPACE_CANCEL: 0x0c,
  SUBSCRIBE_NAMESPACE: 0x11,
  SUBSCRIBE_NAMESPACE_OK: 0x12,
  SUBSCRIBE_NAMESPACE_ERROR: 0x13,
  UNSUBSCRIBE_NAMESPACE: 0x14,
});

/** @type {Map<number, string>} */
export const MESSAGE_NAMES = new Map(Object.entries(MessageType).map(([name, type]) => [type, name]));

/**
 * How one kind of field is written and read. ``read`` also gets the fields read
 * before it (a track name's bound depends on its namespace, a filter's locations
 * on its type).
 * @typedef {{write: (w: Writer, value: any) => void, read: (r: Reader, before: Message) => any}} FieldKind
 */

/** @param {number} filterType */
function isAbsolute(filterType) {
  return filterType === FilterType.ABSOLUTE_START || filterType === FilterType.ABSOLUTE_RANGE;
}

// The field kinds; each message's entry in FIELDS lists its fields in wire order.
/** @type {FieldKind} */
const V = { write: (w, value) => w.varint(value), read: (r) => r.varint() };
/** @type {FieldKind} */
const U8 = { write: (w, value) => w.uint8(value), read: (r) => r.uint8() };
/** @type {FieldKind} */
const NS = { write: (w, value) => w.namespace(value), read: (r) => r.namespace() };
/** @type {FieldKind} */
const PREFIX = { write: (w, value) => w.namespace(value, true), read: (r) => r.namespace(true) };
/** @type {FieldKind} */
const TRACK_NAME = { write: (w, value) => w.bytes(utf8(value)), read: (r, before) => r.trackName(before.namespace) };
/** @type {FieldKind} */
const REASON = { write: (w, value) => w.reason(value), read: (r) => r.reason() };
/** @type {FieldKind} */
const LOC = { write: (w, value) => w.location(value), read: (r) => r.location() };
/** @type {FieldKind} */
const PARAMS = { write: (w, value) => w.parameters(value), read: (r) => r.parameters() };
/** @type {FieldKind} */
const VERSIONS = {
  write: (w, value) => {
    w.varint(value.length);
    for (const version of value) w.varint(version);
  },
  read: (r) => {
    const count = r.varint();
    if (count > r.remaining) throw new MoqtProtocolError(`version count ${count} exceeds message size`);
    const versions = [];
    for (let i = 0; i < count; i++) versions.push(r.varint());
    return versions;
  },
};
/** @type {FieldKind} */
const URI = {
  write: (w, value) => {
    const raw = utf8(value);
    if (raw.length > MAX_GOAWAY_URI_LENGTH) throw new MoqtUsageError("GOAWAY URI is too long");
    w.bytes(raw);
  },
  read: (r) => fromUtf8(r.lengthPrefixed(MAX_GOAWAY_URI_LENGTH, "GOAWAY URI")),
};
/** Content Exists, then the largest location if it is 1 (null when 0). @type {FieldKind} */
const LARGEST = {
  write: (w, value) => {
    w.uint8(value === null ? 0 : 1);
    if (value !== null) w.location(value);
  },
  read: (r) => {
    const contentExists = r.uint8();
    if (contentExists > 1) throw new MoqtProtocolError(`content exists ${contentExists} is not 0 or 1`);
    return contentExists ? r.location() : null;
  },
};
// A subscription filter: its type, then the start location (absolute filters only)
// and the end group (AbsoluteRange only); messageProblem() has checked that they
// are present exactly when the type needs them.
/** @type {FieldKind} */
const FILTER_TYPE = {
  write: (w, value) => w.varint(value),
  read: (r) => {
    const filterType = r.varint();
    if (filterType < 1 || filterType > 4) throw new MoqtProtocolError(`unknown filter type ${filterType}`);
    return filterType;
  },
};
/** @type {FieldKind} */
const FILTER_START = {
  write: (w, value) => {
    if (value !== null) w.location(value);
  },
  read: (r, before) => (isAbsolute(before.filterType) ? r.location() : null),
};
/** @type {FieldKind} */
const FILTER_END = {
  write: (w, value) => {
    if (value !== null) w.varint(value);
  },
  read: (r, before) => (before.filterType === FilterType.ABSOLUTE_RANGE ? r.varint() : null),
};

/** @type {[string, FieldKind][]} */
const SUBSCRIBE_FIELDS = [
  ["requestId", V],
  ["namespace", NS],
  ["trackName", TRACK_NAME],
  ["subscriberPriority", U8],
  ["groupOrder", U8],
  ["forward", U8],
  ["filterType", FILTER_TYPE],
  ["start", FILTER_START],
  ["endGroup", FILTER_END],
  ["parameters", PARAMS],
];
/** @type {[string, FieldKind][]} */
const SUBSCRIBE_OK_FIELDS = [
  ["requestId", V],
  ["trackAlias", V],
  ["expires", V],
  ["groupOrder", U8],
  ["largest", LARGEST],
  ["parameters", PARAMS],
];

/**
 * The fields of every message but FETCH (whose fields depend on its fetch type).
 * @type {Map<number, [string, FieldKind][]>}
 */
const FIELDS = new Map([
  [MessageType.CLIENT_SETUP, [["versions", VERSIONS], ["parameters", PARAMS]]],
  [MessageType.SERVER_SETUP, [["version", V], ["parameters", PARAMS]]],
  [MessageType.GOAWAY, [["newSessionUri", URI]]],
  [MessageType.MAX_REQUEST_ID, [["requestId", V]]],
  [MessageType.REQUESTS_BLOCKED, [["maximumRequestId", V]]],
  [MessageType.SUBSCRIBE_ERROR, [["requestId", V], ["errorCode", V], ["reason", REASON]]],
  [MessageType.TRACK_STATUS_ERROR, [["requestId", V], ["errorCode", V], ["reason", REASON]]],
  [MessageType.PUBLISH_ERROR, [["requestId", V], ["errorCode", V], ["reason", REASON]]],
  [MessageType.FETCH_ERROR, [["requestId", V], ["errorCode", V], ["reason", REASON]]],
  [MessageType.PUBLISH_NAMESPACE_ERROR, [["requestId", V], ["errorCode", V], ["reason", REASON]]],
  [MessageType.SUBSCRIBE_NAMESPACE_ERROR, [["requestId", V], ["errorCode", V], ["reason", REASON]]],
  [
    MessageType.SUBSCRIBE_UPDATE,
    [
      ["requestId", V],
      ["subscriptionRequestId", V],
      ["start", LOC],
      ["endGroup", V],
      ["subscriberPriority", U8],
      ["forward", U8],
      ["parameters", PARAMS],
    ],
  ],
  [MessageType.SUBSCRIBE, SUBSCRIBE_FIELDS],
  [MessageType.TRACK_STATUS, SUBSCRIBE_FIELDS],
  [MessageType.SUBSCRIBE_OK, SUBSCRIBE_OK_FIELDS],
  [MessageType.TRACK_STATUS_OK, SUBSCRIBE_OK_FIELDS],
  [
    MessageType.PUBLISH,
    [
      ["requestId", V],
      ["namespace", NS],
      ["trackName", TRACK_NAME],
      ["trackAlias", V],
      ["groupOrder", U8],
      ["largest", LARGEST],
      ["forward", U8],
      ["parameters", PARAMS],
    ],
  ],
  [
    MessageType.PUBLISH_OK,
    [
      ["requestId", V],
      ["forward", U8],
      ["subscriberPriority", U8],
      ["groupOrder", U8],
      ["filterType", FILTER_TYPE],
      ["start", FILTER_START],
      ["endGroup", FILTER_END],
      ["parameters", PARAMS],
    ],
  ],
  [MessageType.UNSUBSCRIBE, [["requestId", V]]],
  [MessageType.PUBLISH_DONE, [["requestId", V], ["statusCode", V], ["streamCount", V], ["reason", REASON]]],
  [
    MessageType.FETCH_OK,
    [["requestId", V], ["groupOrder", U8], ["endOfTrack", U8], ["endLocation", LOC], ["parameters", PARAMS]],
  ],
  [MessageType.FETCH_CANCEL, [["requestId", V]]],
  [MessageType.PUBLISH_NAMESPACE, [["requestId", V], ["namespace", NS], ["parameters", PARAMS]]],
  [MessageType.PUBLISH_NAMESPACE_OK, [["requestId", V]]],
  [MessageType.PUBLISH_NAMESPACE_DONE, [["namespace", NS]]],
  [MessageType.PUBLISH_NAMESPACE_CANCEL, [["namespace", NS], ["errorCode", V], ["reason", REASON]]],
  [MessageType.SUBSCRIBE_NAMESPACE, [["requestId", V], ["namespacePrefix", PREFIX], ["parameters", PARAMS]]],
  [MessageType.SUBSCRIBE_NAMESPACE_OK, [["requestId", V]]],
  [MessageType.UNSUBSCRIBE_NAMESPACE, [["namespacePrefix", PREFIX]]],
]);

/**
 * @param {number} filterType
 * @param {Location | null} start
 * @param {number | null} endGroup
 * @returns {string | null}
 */
function filterProblem(filterType, start, endGroup) {
  if (isAbsolute(filterType) !== (start !== null)) return "start location must be present exactly for absolute filters";
  if ((filterType === FilterType.ABSOLUTE_RANGE) !== (endGroup !== null)) {
    return "end group must be present exactly for AbsoluteRange";
  }
  if (start !== null && endGroup !== null && endGroup < start.group) return "end group is before the start group";
  return null;
}

/**
 * @param {number} value
 * @param {number} low
 * @param {number} high
 * @param {string} what
 */
function rangeProblem(value, low, high, what) {
  return value >= low && value <= high ? null : `${what} ${value} is not allowed`;
}

/**
 * @param {string[]} namespace
 * @param {string} name
 */
function trackNameProblem(namespace, name) {
  const total = namespace.reduce((sum, f) => sum + utf8(f).length, 0) + utf8(name).length;
  return total > MAX_FULL_TRACK_NAME_LENGTH ? "full track name is longer than 4096 bytes" : null;
}

/**
 * Why ``message`` breaks a draft-14 rule, or null.
 * @param {Message} msg
 * @returns {string | null}
 */
export function messageProblem(msg) {
  switch (msg.type) {
    case MessageType.SUBSCRIBE:
    case MessageType.TRACK_STATUS:
      return (
        trackNameProblem(msg.namespace, msg.trackName) ??
        rangeProblem(msg.groupOrder, 0, 2, "group order") ??
        rangeProblem(msg.forward, 0, 1, "forward") ??
        filterProblem(msg.filterType, msg.start, msg.endGroup)
      );
    case MessageType.SUBSCRIBE_OK:
    case MessageType.TRACK_STATUS_OK:
      return rangeProblem(msg.groupOrder, 1, 2, "group order");
    case MessageType.SUBSCRIBE_UPDATE:
      if (msg.endGroup && msg.endGroup - 1 < msg.start.group) return "end group is before the start group";
      return rangeProblem(msg.forward, 0, 1, "forward");
    case MessageType.PUBLISH:
      return (
        trackNameProblem(msg.namespace, msg.trackName) ??
        rangeProblem(msg.groupOrder, 1, 2, "group order") ??
        rangeProblem(msg.forward, 0, 1, "forward")
      );
    case MessageType.PUBLISH_OK:
      return (
        rangeProblem(msg.forward, 0, 1, "forward") ??
        rangeProblem(msg.groupOrder, 1, 2, "group order") ??
        filterProblem(msg.filterType, msg.start, msg.endGroup)
      );
    case MessageType.FETCH:
      if (msg.fetchType === FetchType.STANDALONE) {
        const problem = trackNameProblem(msg.namespace, msg.trackName);
        if (problem) return problem;
        if (msg.joiningRequestId !== null) return "standalone FETCH carries joining fields";
      } else if (msg.namespace.length || msg.trackName || msg.start || msg.end) {
        return "joining FETCH carries standalone fields";
      }
      return rangeProblem(msg.groupOrder, 0, 2, "group order");
    case MessageType.FETCH_OK:
      return rangeProblem(msg.groupOrder, 1, 2, "group order") ?? rangeProblem(msg.endOfTrack, 0, 1, "end of track");
    default:
      return null;
  }
}

/**
 * Fill in the defaults of the optional fields, as the Python dataclasses do.
 * @param {Message} msg
 * @returns {Message}
 */
function withDefaults(msg) {
  switch (msg.type) {
    case MessageType.SUBSCRIBE:
    case MessageType.TRACK_STATUS:
      return {
        subscriberPriority: 128,
        groupOrder: 1,
        forward: 1,
        filterType: FilterType.LARGEST_OBJECT,
        start: null,
        endGroup: null,
        parameters: [],
        ...msg,
      };
    case MessageType.SUBSCRIBE_OK:
    case MessageType.TRACK_STATUS_OK:
      return { expires: 0, groupOrder: 1, largest: null, parameters: [], ...msg };
    case MessageType.PUBLISH:
      return { groupOrder: 1, largest: null, forward: 1, parameters: [], ...msg };
    case MessageType.PUBLISH_OK:
      return {
        forward: 1,
        subscriberPriority: 128,
        groupOrder: 1,
        filterType: FilterType.LARGEST_OBJECT,
        start: null,
        endGroup: null,
        parameters: [],
        ...msg,
      };
    case MessageType.FETCH:
      return {
        namespace: [],
        trackName: "",
        start: null,
        end: null,
        joiningRequestId: null,
        joiningStart: null,
        parameters: [],
        ...msg,
      };
    default: {
      const fields = FIELDS.get(msg.type) ?? [];
      /** @type {Message} */
      const out = { ...msg };
      for (const [name, kind] of fields) {
        if (out[name] === undefined) {
          if (kind === PARAMS) out[name] = [];
          else if (kind === REASON || kind === URI) out[name] = "";
        }
      }
      return out;
    }
  }
}

/**
 * @param {Writer} w
 * @param {Message} msg
 */
function encodePayload(w, msg) {
  const fields = FIELDS.get(msg.type);
  if (fields) {
    for (const [name, kind] of fields) kind.write(w, msg[name]);
    return;
  }
  if (msg.type !== MessageType.FETCH) {
    throw new MoqtUsageError(`unknown control message type 0x${msg.type.toString(16)}`);
  }
  w.varint(msg.requestId).uint8(msg.subscriberPriority).uint8(msg.groupOrder).varint(msg.fetchType);
  if (msg.fetchType === FetchType.STANDALONE) {
    if (msg.start === null || msg.end === null) throw new MoqtUsageError("standalone FETCH needs start and end");
    w.namespace(msg.namespace).bytes(utf8(msg.trackName)).location(msg.start).location(msg.end);
  } else {
    if (msg.joiningRequestId === null || msg.joiningStart === null) {
      throw new MoqtUsageError("joining FETCH needs a request ID and a start");
    }
    w.varint(msg.joiningRequestId).varint(msg.joiningStart);
  }
  w.parameters(msg.parameters);
}

/**
 * @param {number} type
 * @param {Reader} r
 * @returns {Message}
 */
function decodePayload(type, r) {
  const fields = FIELDS.get(type);
  if (fields) {
    /** @type {Message} */
    const msg = { type };
    for (const [name, kind] of fields) msg[name] = kind.read(r, msg);
    return msg;
  }
  if (type !== MessageType.FETCH) {
    throw new MoqtProtocolError(`unknown control message type 0x${type.toString(16)}`);
  }
  const requestId = r.varint();
  const subscriberPriority = r.uint8();
  const groupOrder = r.uint8();
  const fetchType = r.varint();
  const base = { type, requestId, subscriberPriority, groupOrder, fetchType };
  if (fetchType === FetchType.STANDALONE) {
    const namespace = r.namespace();
    const trackName = r.trackName(namespace);
    const start = r.location();
    const end = r.location();
    return withDefaults({ ...base, namespace, trackName, start, end, parameters: r.parameters() });
  }
  if (fetchType === FetchType.RELATIVE_JOINING || fetchType === FetchType.ABSOLUTE_JOINING) {
    const joiningRequestId = r.varint();
    const joiningStart = r.varint();
    return withDefaults({ ...base, joiningRequestId, joiningStart, parameters: r.parameters() });
  }
  throw new MoqtProtocolError(`unknown fetch type ${fetchType}`);
}

/**
 * Serialize ``message`` with its type and 16-bit length prefix.
 * @param {Message} message
 * @returns {Uint8Array}
 */
export function encodeMessage(message) {
  if (!MESSAGE_NAMES.has(message.type)) {
    throw new MoqtUsageError(`unknown control message type 0x${message.type.toString(16)}`);
  }
  const msg = withDefaults(message);
  const problem = messageProblem(msg);
  if (problem !== null) throw new MoqtUsageError(`${MESSAGE_NAMES.get(msg.type)}: ${problem}`);
  const payload = new Writer();
  encodePayload(payload, msg);
  if (payload.length > MAX_MESSAGE_PAYLOAD) {
    throw new MoqtUsageError(`${MESSAGE_NAMES.get(msg.type)} payload of ${payload.length} bytes is too long`);
  }
  const out = new Writer(payload.length + 10).varint(msg.type);
  out.reserve(2);
  out.buffer[out.length++] = payload.length >> 8;
  out.buffer[out.length++] = payload.length & 0xff;
  return out.raw(payload.buffer.subarray(0, payload.length)).finish();
}

/**
 * Decode one complete payload; any mismatch is a protocol violation.
 * @param {number} type
 * @param {Uint8Array} payload
 * @returns {Message}
 */
export function decodeMessage(type, payload) {
  const name = MESSAGE_NAMES.get(type);
  if (name === undefined) throw new MoqtProtocolError(`unknown control message type 0x${type.toString(16)}`);
  const reader = new Reader(payload);
  let msg;
  try {
    msg = decodePayload(type, reader);
  } catch (error) {
    if (error instanceof NeedMoreData) throw new MoqtProtocolError(`${name} is shorter than its fields`);
    throw error;
  }
  if (!reader.atEnd()) throw new MoqtProtocolError(`${name} has ${reader.remaining} bytes after its fields`);
  const problem = messageProblem(msg);
  if (problem !== null) throw new MoqtProtocolError(`${name}: ${problem}`);
  return msg;
}

/** Splits the control stream into messages, however its bytes are chunked. */
export class ControlStreamParser {
  constructor() {
    /** @type {Uint8Array} */
    this.buffer = new Uint8Array(0);
  }

  /** Bytes held for an incomplete message (at most 8 + 2 + 65535). */
  get buffered() {
    return this.buffer.length;
  }

  /**
   * @param {Uint8Array} data
   * @returns {Message[]}
   */
  feed(data) {
    const buffer = concat(this.buffer, data);
    /** @type {Message[]} */
    const messages = [];
    let pos = 0;
    for (;;) {
      const reader = new Reader(buffer, pos);
      let type;
      let payload;
      try {
        type = reader.varint();
        if (!MESSAGE_NAMES.has(type)) {
          throw new MoqtProtocolError(`unknown control message type 0x${type.toString(16)}`);
        }
        const length = reader.uint16();
        payload = reader.bytes(length);
      } catch (error) {
        if (error instanceof NeedMoreData) break;
        throw error;
      }
      messages.push(decodeMessage(type, payload));
      pos = reader.pos;
    }
    this.buffer = buffer.slice(pos);
    return messages;
  }
}

/**
 * @param {Uint8Array} a
 * @param {Uint8Array} b
 */
export function concat(a, b) {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

// --- Data streams --------------------------------------------------------------------

/**
 * SUBGROUP_HEADER, the first bytes of a subgroup stream.
 * @typedef {{
 *   kind: "subgroup",
 *   streamType: number,
 *   trackAlias: number,
 *   groupId: number,
 *   subgroupId: number,
 *   publisherPriority: number,
 *   hasExtensions: boolean,
 *   endOfGroup: boolean,
 * }} SubgroupHeader
 * @typedef {{kind: "fetch", requestId: number}} FetchHeader
 * @typedef {{
 *   kind: "object",
 *   objectId: number,
 *   payload: Uint8Array,
 *   status: number,
 *   extensions: Parameters,
 * }} SubgroupObject
 */

/** @param {number} streamType */
export function isSubgroupStreamType(streamType) {
  return streamType >= 0x10 && streamType <= 0x1d && (streamType & 0x06) !== 0x06;
}

/**
 * @param {number} status
 * @param {Uint8Array} payload
 * @param {Parameters} extensions
 */
function checkStatus(status, payload, extensions) {
  if (!STATUSES.has(status)) throw new MoqtProtocolError(`unknown object status ${status}`);
  if (status === ObjectStatus.DOES_NOT_EXIST && extensions.length) {
    throw new MoqtProtocolError("an object that does not exist carries extension headers");
  }
  if (status !== ObjectStatus.NORMAL && payload.length) {
    throw new MoqtProtocolError("an object with a status carries a payload");
  }
}

/**
 * One encoded frame as a whole subgroup stream: header type 0x19 (subgroup 0,
 * extensions, end of group), object 0 with the LOC timestamp, the payload. This is
 * the layout of ``clutchcall.moqt.AudioPublisher.send_frame``.
 * @param {{trackAlias: number, groupId: number, publisherPriority?: number,
 *          payload: Uint8Array, timestampUs: number}} frame
 */
export function encodeAudioObjectStream({ trackAlias, groupId, publisherPriority = 0, payload, timestampUs }) {
  const w = new Writer(payload.length + 32);
  w.varint(0x19).varint(trackAlias).varint(groupId).uint8(publisherPriority);
  const ext = new Writer(16).keyValuePair([TIMESTAMP_EXTENSION, timestampUs]);
  w.varint(0).varint(ext.length).raw(ext.buffer.subarray(0, ext.length));
  w.varint(payload.length).raw(payload);
  return w.finish();
}

/**
 * Encode a SUBGROUP_HEADER.
 * @param {Omit<SubgroupHeader, "kind" | "streamType"> & {subgroupIdMode?: number}} header
 */
export function encodeSubgroupHeader(header) {
  const mode = header.subgroupIdMode ?? (header.subgroupId ? 0x04 : 0x00);
  if (header.subgroupId && mode !== 0x04) throw new MoqtUsageError("a non-zero subgroup ID needs explicit mode");
  const type = 0x10 | mode | (header.hasExtensions ? 0x01 : 0) | (header.endOfGroup ? 0x08 : 0);
  const w = new Writer(16).varint(type).varint(header.trackAlias).varint(header.groupId);
  if (mode === 0x04) w.varint(header.subgroupId);
  return w.uint8(header.publisherPriority).finish();
}

/**
 * Encode one object of a subgroup stream (``hasExtensions`` comes from the header).
 * @param {number} objectIdDelta
 * @param {Uint8Array} payload
 * @param {{status?: number, extensions?: Parameters, hasExtensions: boolean}} options
 */
export function encodeSubgroupObject(objectIdDelta, payload, { status = 0, extensions = [], hasExtensions }) {
  try {
    checkStatus(status, payload, extensions);
  } catch (error) {
    throw new MoqtUsageError(/** @type {Error} */ (error).message);
  }
  const w = new Writer(payload.length + 16).varint(objectIdDelta);
  if (hasExtensions) {
    const block = new Writer(16);
    for (const pair of extensions) block.keyValuePair(pair);
    w.varint(block.length).raw(block.buffer.subarray(0, block.length));
  } else if (extensions.length) {
    throw new MoqtUsageError("the subgroup header was opened without extensions");
  }
  w.varint(payload.length);
  if (payload.length) w.raw(payload);
  else w.varint(status);
  return w.finish();
}

/**
 * Parses one incoming unidirectional stream, however its bytes are chunked: the
 * header first, then each complete object. Declared lengths above the limits are
 * refused as soon as they are read, before their bytes are held.
 */
export class DataStreamParser {
  constructor(maxObjectSize = DEFAULT_MAX_OBJECT_SIZE) {
    this.maxObjectSize = maxObjectSize;
    /** @type {Uint8Array} */
    this.buffer = new Uint8Array(0);
    /** @type {SubgroupHeader | FetchHeader | null} */
    this.header = null;
    /** @type {number | null} */
    this.lastObjectId = null;
    this.finished = false;
  }

  get buffered() {
    return this.buffer.length;
  }

  /**
   * @param {Uint8Array} data
   * @param {boolean} [end]
   * @returns {(SubgroupHeader | FetchHeader | SubgroupObject)[]}
   */
  feed(data, end = false) {
    if (this.finished) {
      if (data.length || !end) throw new MoqtProtocolError("data after the end of a stream");
      return [];
    }
    const buffer = concat(this.buffer, data);
    /** @type {(SubgroupHeader | FetchHeader | SubgroupObject)[]} */
    const items = [];
    let pos = 0;
    while (pos < buffer.length) {
      const reader = new Reader(buffer, pos);
      try {
        items.push(this.parseOne(reader));
      } catch (error) {
        if (error instanceof NeedMoreData) break;
        throw error;
      }
      pos = reader.pos;
    }
    this.buffer = buffer.slice(pos);
    if (end) {
      this.finished = true;
      if (this.buffer.length) throw new MoqtProtocolError("stream ended in the middle of an object");
    }
    return items;
  }

  /** @param {Reader} r */
  parseOne(r) {
    const header = this.header;
    if (header === null) {
      const streamType = r.varint();
      /** @type {SubgroupHeader | FetchHeader} */
      let parsed;
      if (streamType === 0x05) {
        parsed = { kind: "fetch", requestId: r.varint() };
      } else {
        if (!isSubgroupStreamType(streamType)) {
          throw new MoqtProtocolError(`unknown data stream type 0x${streamType.toString(16)}`);
        }
        const mode = streamType & 0x06;
        const trackAlias = r.varint();
        const groupId = r.varint();
        const subgroupId = mode === 0x04 ? r.varint() : 0;
        const publisherPriority = r.uint8();
        parsed = {
          kind: "subgroup",
          streamType,
          trackAlias,
          groupId,
          subgroupId,
          publisherPriority,
          hasExtensions: Boolean(streamType & 0x01),
          endOfGroup: Boolean(streamType & 0x08),
        };
      }
      this.header = parsed;
      return parsed;
    }
    if (header.kind === "fetch") {
      throw new MoqtProtocolError("fetch streams are not read by this client");
    }
    const delta = r.varint();
    /** @type {Parameters} */
    let extensions = [];
    if (header.hasExtensions) {
      const length = r.varint();
      if (length > MAX_EXTENSIONS_LENGTH) {
        throw new MoqtProtocolError(`extension headers of ${length} bytes are too long`);
      }
      extensions = decodeKeyValuePairs(r.bytes(length));
    }
    const length = r.varint();
    if (length > this.maxObjectSize) {
      throw new MoqtProtocolError(`object payload of ${length} bytes exceeds ${this.maxObjectSize}`);
    }
    let payload;
    let status = 0;
    if (length === 0) {
      payload = new Uint8Array(0);
      status = r.varint();
    } else {
      payload = r.bytes(length);
    }
    checkStatus(status, payload, extensions);
    const objectId = this.lastObjectId === null ? delta : this.lastObjectId + delta + 1;
    if (!Number.isSafeInteger(objectId)) throw new MoqtProtocolError("object ID overflows");
    this.lastObjectId = objectId;
    return /** @type {SubgroupObject} */ ({ kind: "object", objectId, payload, status, extensions });
  }
}

// --- Datagrams -----------------------------------------------------------------------

/**
 * OBJECT_DATAGRAM; ``status`` null means a payload datagram.
 * @typedef {{
 *   datagramType?: number,
 *   trackAlias: number,
 *   groupId: number,
 *   objectId: number,
 *   publisherPriority: number,
 *   payload: Uint8Array,
 *   status: number | null,
 *   extensions: Parameters,
 *   endOfGroup: boolean,
 * }} ObjectDatagram
 */

/** @param {ObjectDatagram} d */
export function encodeDatagram(d) {
  const hasExt = d.extensions.length ? 0x01 : 0;
  let type;
  if (d.status !== null) {
    if (d.payload.length || d.endOfGroup) {
      throw new MoqtUsageError("a status datagram has no payload and no end-of-group flag");
    }
    type = 0x20 | hasExt;
  } else {
    type = hasExt | (d.endOfGroup ? 0x02 : 0) | (d.objectId === 0 ? 0x04 : 0);
  }
  const w = new Writer(d.payload.length + 24).varint(type).varint(d.trackAlias).varint(d.groupId);
  if (!(type & 0x04)) w.varint(d.objectId);
  w.uint8(d.publisherPriority);
  if (hasExt) {
    const block = new Writer(16);
    for (const pair of d.extensions) block.keyValuePair(pair);
    w.varint(block.length).raw(block.buffer.subarray(0, block.length));
  }
  if (d.status !== null) w.varint(d.status);
  else w.raw(d.payload);
  return w.finish();
}

/**
 * @param {Uint8Array} data
 * @returns {ObjectDatagram}
 */
export function decodeDatagram(data) {
  const r = new Reader(data);
  try {
    const type = r.varint();
    if (!(type <= 0x07 || type === 0x20 || type === 0x21)) {
      throw new MoqtProtocolError(`unknown datagram type 0x${type.toString(16)}`);
    }
    const isStatus = type >= 0x20;
    const trackAlias = r.varint();
    const groupId = r.varint();
    const objectId = !isStatus && type & 0x04 ? 0 : r.varint();
    const publisherPriority = r.uint8();
    /** @type {Parameters} */
    let extensions = [];
    if (type & 0x01) {
      const length = r.varint();
      if (length === 0) throw new MoqtProtocolError("datagram declares extensions of length 0");
      extensions = decodeKeyValuePairs(r.bytes(length));
    }
    /** @type {number | null} */
    let status = null;
    let payload;
    if (isStatus) {
      status = r.varint();
      if (!r.atEnd()) throw new MoqtProtocolError("status datagram has trailing bytes");
      payload = new Uint8Array(0);
      checkStatus(status, payload, extensions);
    } else {
      payload = data.slice(r.pos);
    }
    // The status types (0x20, 0x21) have the end-of-group bit clear.
    const endOfGroup = Boolean(type & 0x02);
    return {
      datagramType: type,
      trackAlias,
      groupId,
      objectId,
      publisherPriority,
      payload,
      status,
      extensions,
      endOfGroup,
    };
  } catch (error) {
    if (error instanceof NeedMoreData) throw new MoqtProtocolError("truncated datagram");
    throw error;
  }
}
