// The browser module's MoQT codec against the byte vectors the Python core is also
// tested with (tests/moqt/wire_vectors.json): the two cannot drift apart.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  ControlStreamParser,
  DataStreamParser,
  MESSAGE_NAMES,
  MessageType,
  MoqtProtocolError,
  MoqtUsageError,
  Reader,
  authorizationToken,
  decodeDatagram,
  encodeAudioObjectStream,
  encodeDatagram,
  encodeMessage,
  encodeSubgroupHeader,
  encodeSubgroupObject,
  encodeVarint,
  timestampFromExtensions,
} from "../../clutchcall/web/wire.js";

const vectors = JSON.parse(readFileSync(new URL("../moqt/wire_vectors.json", import.meta.url), "utf-8"));

const hex = (/** @type {string} */ text) => Uint8Array.from(Buffer.from(text, "hex"));
const toHex = (/** @type {Uint8Array} */ bytes) => Buffer.from(bytes).toString("hex");
const camel = (/** @type {string} */ name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

/** @param {[number, number | string][]} pairs */
function parameters(pairs) {
  return pairs.map(([kind, value]) => [kind, kind % 2 === 0 ? value : hex(/** @type {string} */ (value))]);
}

/** A vector's fields as the JavaScript codec holds them. */
function message(/** @type {any} */ vector) {
  /** @type {Record<string, any>} */
  const msg = { type: vector.type };
  for (const [name, value] of Object.entries(vector.fields)) {
    msg[camel(name)] = name === "parameters" ? parameters(/** @type {any} */ (value)) : value;
  }
  return msg;
}

test("every control message type of draft-14 has a vector and a name", () => {
  assert.deepEqual(new Set(vectors.messages.map((/** @type {any} */ v) => v.name)), new Set(MESSAGE_NAMES.values()));
  for (const v of vectors.messages) assert.equal(MessageType[/** @type {keyof MessageType} */ (v.name)], v.type);
});

test("varints encode to the shortest form and decode", () => {
  for (const v of vectors.varints) {
    if (v.unsafe_in_js) {
      assert.throws(() => new Reader(hex(v.hex)).varint(), MoqtProtocolError, v.hex);
      continue;
    }
    assert.equal(toHex(encodeVarint(v.value)), v.hex, String(v.value));
    const reader = new Reader(hex(v.hex));
    assert.equal(reader.varint(), v.value);
    assert.ok(reader.atEnd());
  }
  for (const v of vectors.non_minimal_varints) assert.equal(new Reader(hex(v.hex)).varint(), v.value);
  assert.throws(() => encodeVarint(-1), MoqtUsageError);
  assert.throws(() => encodeVarint(2 ** 53), MoqtUsageError);
});

test("authorization tokens are USE_VALUE parameters", () => {
  for (const v of vectors.authorization_tokens) {
    const [kind, value] = authorizationToken(v.token);
    assert.equal(kind, v.parameter_type);
    assert.equal(toHex(/** @type {Uint8Array} */ (value)), v.value);
  }
});

test("control messages encode to the vectors' bytes and decode to their fields", () => {
  for (const v of vectors.messages) {
    const expected = message(v);
    assert.equal(toHex(encodeMessage(expected)), v.hex, `${v.name} encodes`);
    assert.deepEqual(new ControlStreamParser().feed(hex(v.hex)), [expected], `${v.name} decodes`);
  }
});

test("the control stream parser handles any chunking", () => {
  const all = vectors.messages.map((/** @type {any} */ v) => v.hex).join("");
  const bytes = hex(all);
  const parser = new ControlStreamParser();
  const got = [];
  for (let i = 0; i < bytes.length; i += 3) got.push(...parser.feed(bytes.subarray(i, i + 3)));
  assert.deepEqual(got, vectors.messages.map(message));
  assert.equal(parser.buffered, 0);
});

test("malformed control messages are protocol violations", () => {
  for (const v of vectors.bad_messages) {
    assert.throws(() => new ControlStreamParser().feed(hex(v.hex)), MoqtProtocolError, v.why);
  }
});

test("incomplete control messages wait for more bytes", () => {
  for (const v of vectors.incomplete_messages) {
    const parser = new ControlStreamParser();
    assert.deepEqual(parser.feed(hex(v.hex)), [], v.why);
    assert.equal(parser.buffered, v.hex.length / 2);
  }
});

test("subgroup streams encode and parse like the Python core", () => {
  for (const v of vectors.subgroup_streams) {
    const h = v.header;
    const header = {
      kind: "subgroup",
      streamType: h.stream_type,
      trackAlias: h.track_alias,
      groupId: h.group_id,
      subgroupId: h.subgroup_id,
      publisherPriority: h.publisher_priority,
      hasExtensions: h.has_extensions,
      endOfGroup: h.end_of_group,
    };
    const chunks = [encodeSubgroupHeader({ ...header, subgroupIdMode: h.stream_type & 0x06 })];
    const objects = [];
    /** @type {number | null} */
    let last = null;
    for (const o of v.objects) {
      const payload = hex(o.payload);
      const extensions = parameters(o.extensions);
      const delta = last === null ? o.object_id : o.object_id - last - 1;
      last = o.object_id;
      chunks.push(encodeSubgroupObject(delta, payload, { status: o.status, extensions, hasExtensions: h.has_extensions }));
      objects.push({ kind: "object", objectId: o.object_id, payload, status: o.status, extensions });
    }
    assert.equal(chunks.map(toHex).join(""), v.hex);
    const whole = new DataStreamParser().feed(hex(v.hex), true);
    assert.deepEqual(whole, [header, ...objects]);
    const parser = new DataStreamParser();
    const bytes = hex(v.hex);
    const bytewise = [];
    for (let i = 0; i < bytes.length; i++) bytewise.push(...parser.feed(bytes.subarray(i, i + 1)));
    bytewise.push(...parser.feed(new Uint8Array(0), true));
    assert.deepEqual(bytewise, whole);
  }
});

test("an audio frame is one object with the LOC timestamp on a type 0x19 stream", () => {
  const v = vectors.subgroup_streams[0];
  const o = v.objects[0];
  const bytes = encodeAudioObjectStream({
    trackAlias: v.header.track_alias,
    groupId: v.header.group_id,
    publisherPriority: v.header.publisher_priority,
    payload: hex(o.payload),
    timestampUs: o.extensions[0][1],
  });
  assert.equal(toHex(bytes), v.hex);
  const [, object] = new DataStreamParser().feed(bytes, true);
  assert.equal(timestampFromExtensions(/** @type {any} */ (object).extensions), o.extensions[0][1]);
});

test("a legacy LOC timestamp (0x06) is read", () => {
  const v = vectors.subgroup_streams[1];
  const [, object] = new DataStreamParser().feed(hex(v.hex), true);
  assert.equal(timestampFromExtensions(/** @type {any} */ (object).extensions), 20000);
});

test("object datagrams encode and decode like the Python core", () => {
  for (const v of vectors.datagrams) {
    const datagram = {
      datagramType: v.datagram_type,
      trackAlias: v.track_alias,
      groupId: v.group_id,
      objectId: v.object_id,
      publisherPriority: v.publisher_priority,
      payload: hex(v.payload),
      status: v.status,
      extensions: parameters(v.extensions),
      endOfGroup: v.end_of_group,
    };
    assert.equal(toHex(encodeDatagram(datagram)), v.hex);
    assert.deepEqual(decodeDatagram(hex(v.hex)), datagram);
  }
});

test("hostile data streams are refused before their bytes are buffered", () => {
  const parser = new DataStreamParser(1000);
  // type 0x10, alias 0, group 0, priority 0, object delta 0, payload length 2^30 - 1
  assert.throws(() => parser.feed(hex("1000000000bfffffff")), MoqtProtocolError);
  assert.throws(() => new DataStreamParser().feed(hex("16000000")), MoqtProtocolError);
  assert.throws(() => new DataStreamParser().feed(hex("1000000000"), true), MoqtProtocolError);
  assert.throws(() => decodeDatagram(hex("0700")), MoqtProtocolError);
  assert.throws(() => decodeDatagram(hex("08000000")), MoqtProtocolError);
});
