// The caller bridge's catalogs over a scripted relay (scripted_relay.mjs): it
// declares its format in the uplink catalog, byte for byte as the Python
// CatalogPublisher would (the shared vectors of tests/moqt/wire_vectors.json), and
// reads the server side's downlink catalog. The real relay and browser are in
// test_softphone_browser.py.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { attachCaller } from "../../clutchcall/web/bridge.js";
import { AudioFormat, encodeCatalog, sideCatalog } from "../../clutchcall/web/catalog.js";
import { BridgeError, MoqtClient } from "../../clutchcall/web/moqt.js";
import { MessageType, utf8 } from "../../clutchcall/web/wire.js";
import { ScriptedRelay, waitFor } from "./scripted_relay.mjs";

const vectors = JSON.parse(readFileSync(new URL("../moqt/wire_vectors.json", import.meta.url), "utf-8"));
const [stream] = vectors.catalog_streams;
const SID = stream.call_sid;
const toHex = (/** @type {Uint8Array} */ bytes) => Buffer.from(bytes).toString("hex");

/** @param {{codec: string, sample_rate: number, channels: number, frame_ms: number}} f */
const formatOf = (f) => new AudioFormat({ codec: f.codec, sampleRate: f.sample_rate, channels: f.channels, frameMs: f.frame_ms });

/**
 * @param {ScriptedRelay} relay
 * @param {Record<string, unknown>} [options]
 */
function attach(relay, options = {}) {
  return attachCaller(SID, {
    relayUrl: "https://relay.test/",
    token: "caller-token",
    webTransport: relay.dial,
    connectTimeoutMs: 5000,
    ...options,
  });
}

test("the bridge declares its format: the Python catalog stream's exact bytes, a new group per version", async () => {
  const relay = new ScriptedRelay();
  const bridge = await attach(relay);
  try {
    // The catalog's own namespace, announced with the track token.
    const announced = relay.sent(MessageType.PUBLISH_NAMESPACE).map((m) => m.namespace);
    assert.deepEqual(announced, [
      ["voice", SID],
      ["voice", SID, "uplink"],
    ]);
    const [, catalogAnnounce] = relay.sent(MessageType.PUBLISH_NAMESPACE);
    assert.deepEqual(catalogAnnounce.parameters[0][0], 0x03); // AUTHORIZATION_TOKEN
    assert.ok(bridge.format.equals(new AudioFormat()));
    assert.ok(bridge.uplink?.format?.equals(bridge.format));
    // Version 1 (the default Opus 48 kHz mono 20 ms) as soon as the relay subscribed.
    const [first] = await waitFor(() => relay.catalogObjects.length >= 1 && relay.catalogObjects, "the catalog");
    assert.deepEqual(first.namespace, ["voice", SID, "uplink"]);
    assert.equal(toHex(first.bytes), stream.versions[0].hex);
    assert.equal(Buffer.from(first.object.payload).toString("latin1"), vectors.catalogs[0].json);
    // A new format is a new version, in the next group.
    bridge.uplink?.setFormat(formatOf({ codec: "pcm16", sample_rate: 16000, channels: 1, frame_ms: 20 }));
    const second = await waitFor(() => relay.catalogObjects[1], "the second version");
    assert.equal(toHex(second.bytes), stream.versions[1].hex);
    bridge.uplink?.setFormat(/** @type {AudioFormat} */ (bridge.uplink?.format)); // unchanged: nothing sent
  } finally {
    await bridge.close();
  }
  assert.equal(relay.catalogObjects.length, 2);
  // close() ended the catalog too: PUBLISH_DONE to its subscriber, its namespace withdrawn.
  assert.equal(relay.sent(MessageType.PUBLISH_DONE).length, 1);
  assert.deepEqual(
    relay.sent(MessageType.PUBLISH_NAMESPACE_DONE).map((m) => m.namespace),
    [
      ["voice", SID],
      ["voice", SID, "uplink"],
    ],
  );
});

test("every codec the bridge accepts is declared as the Python catalog module writes it", async () => {
  for (const vector of vectors.catalogs.filter((/** @type {any} */ v) => v.track === "uplink" && v.call_sid === SID)) {
    const relay = new ScriptedRelay();
    const f = vector.format;
    const bridge = await attach(relay, { codec: f.codec, sampleRate: f.sample_rate, channels: f.channels, frameMs: f.frame_ms });
    try {
      const object = await waitFor(() => relay.catalogObjects[0], vector.why);
      assert.equal(Buffer.from(object.object.payload).toString("latin1"), vector.json, vector.why);
    } finally {
      await bridge.close();
    }
  }
});

test("attachCaller checks the format against the codec table; G.711 defaults to 8 kHz", async () => {
  for (const bad of [
    { codec: "speex" },
    { codec: "opus", sampleRate: 44100 },
    { codec: "opus", frameMs: 30 },
    { codec: "g711_ulaw", channels: 2 },
    { codec: "pcm16", sampleRate: 22050 },
  ]) {
    await assert.rejects(attach(new ScriptedRelay(), bad), TypeError, JSON.stringify(bad));
  }
  const relay = new ScriptedRelay();
  const bridge = await attach(relay, { codec: "g711_ulaw" });
  try {
    assert.equal(String(bridge.format), "g711_ulaw 8000 Hz 1 ch 20 ms");
    assert.equal(bridge.sampleRate, 8000);
  } finally {
    await bridge.close();
  }
  assert.equal(relay.sessions.length, 1); // the refused ones never dialed
});

test("downlinkFormat follows the server side's catalog, newest group first, malformed ones ignored", async () => {
  const relay = new ScriptedRelay();
  /** @type {(AudioFormat | null)[]} */
  const seen = [];
  const bridge = await attach(relay, { onDownlinkFormat: (/** @type {AudioFormat | null} */ f) => seen.push(f) });
  const namespace = ["voice", SID, "downlink"];
  try {
    assert.ok(bridge.downlinkCatalog !== null);
    assert.equal(bridge.downlinkFormat, null); // nothing declared yet
    const [subscribe] = relay.catalogSubscribers.map((s) => s.subscribe);
    assert.deepEqual(subscribe.namespace, namespace);
    assert.equal(subscribe.filterType, 0x3); // from group 0 on: a relay's cached version counts
    assert.deepEqual(subscribe.start, { group: 0, object: 0 });
    const pcm = formatOf({ codec: "pcm16", sample_rate: 44100, channels: 2, frame_ms: 30 });
    relay.publishCatalog(namespace, 1, encodeCatalog(sideCatalog(SID, "downlink", pcm)));
    await waitFor(() => bridge.downlinkFormat, "the downlink format");
    assert.ok(bridge.downlinkFormat?.equals(pcm));
    const ulaw = new AudioFormat({ codec: "g711_ulaw" });
    relay.publishCatalog(namespace, 3, encodeCatalog(sideCatalog(SID, "downlink", ulaw)));
    await waitFor(() => bridge.downlinkFormat?.equals(ulaw), "the second version");
    // An older version that arrives late changes nothing; a malformed one is counted.
    relay.publishCatalog(namespace, 2, encodeCatalog(sideCatalog(SID, "downlink", pcm)));
    relay.publishCatalog(namespace, 4, utf8('{"version": "draft-01", "tracks": [{"name": 5}]}'));
    await waitFor(() => bridge.downlinkCatalog?.malformed === 1, "the malformed version");
    assert.ok(bridge.downlinkFormat?.equals(ulaw));
    assert.equal(bridge.downlinkCatalog?.lastError?.name, "CatalogError");
    // A catalog that declares only uplink declares no downlink format.
    relay.publishCatalog(namespace, 5, encodeCatalog(sideCatalog(SID, "uplink", pcm)));
    await waitFor(() => bridge.downlinkFormat === null, "no downlink format");
    assert.deepEqual(seen.map(String), [String(pcm), String(ulaw), "null"]);
    // The frames' stats count audio only.
    assert.equal(bridge.stats.framesIn, 0);
  } finally {
    await bridge.close();
  }
});

test("a relay without catalogs: the bridge still attaches, its formats undeclared", async () => {
  const relay = new ScriptedRelay({ refuseCatalogs: true });
  const bridge = await attach(relay);
  try {
    assert.equal(bridge.downlinkCatalog, null);
    assert.equal(bridge.downlinkFormat, null);
    const catalog = bridge.uplink?.catalog;
    assert.ok(catalog?.error instanceof BridgeError);
    assert.match(catalog.error.message, /the uplink catalog of CA.*no catalogs here/);
    // The audio track itself is unaffected.
    assert.equal(bridge.uplink?.error, null);
    assert.equal(relay.catalogObjects.length, 0);
  } finally {
    await bridge.close();
  }
});

test("after a redial the catalog is announced again and resent in the next group", async () => {
  const relay = new ScriptedRelay();
  const bridge = await attach(relay);
  try {
    const first = await waitFor(() => relay.catalogObjects[0], "the first version");
    assert.equal(first.header.groupId, 1);
    relay.session.close({ closeCode: 0, reason: "relay restart" });
    const again = await waitFor(() => relay.catalogObjects[1], "the version after the redial", 10000);
    assert.equal(relay.sessions.length, 2);
    assert.equal(again.session, relay.sessions[1]);
    assert.equal(again.header.groupId, 2);
    assert.deepEqual(again.object.payload, first.object.payload);
    assert.equal(bridge.stats.reconnects, 1);
  } finally {
    await bridge.close();
  }
});

test("MoqtClient: catalogs are subscribed to by namespace, once each", async () => {
  const relay = new ScriptedRelay();
  const client = new MoqtClient({ url: "https://relay.test/", token: "t", webTransport: relay.dial, reconnect: false });
  await client.connect();
  try {
    const merged = await client.subscribeCatalog(SID);
    assert.deepEqual(merged.namespace, ["voice", SID]);
    const side = await client.subscribeCatalog(SID, "uplink");
    assert.deepEqual(side.namespace, ["voice", SID, "uplink"]);
    await assert.rejects(client.subscribeCatalog(SID, "uplink"), BridgeError);
    await assert.rejects(client.subscribeCatalog(SID, "catalog"), TypeError);
    // Audio and catalogs of one call do not collide.
    const audio = await client.subscribeAudio(SID, "uplink");
    assert.equal(audio.answered, true);
    const pcm = formatOf({ codec: "pcm16", sample_rate: 16000, channels: 1, frame_ms: 20 });
    relay.publishCatalog(["voice", SID], 1, encodeCatalog(sideCatalog(SID, "uplink", pcm)));
    await waitFor(() => merged.latest, "the merged catalog");
    assert.ok(merged.formatOf("uplink")?.equals(pcm));
    assert.equal(side.latest, null);
    side.close();
    await waitFor(() => relay.sent(MessageType.UNSUBSCRIBE).length === 1, "the UNSUBSCRIBE");
    await assert.rejects(client.publishAudio(SID, "uplink", { format: /** @type {any} */ ("opus") }), TypeError);
  } finally {
    await client.close();
  }
});
