// The browser module's MSF catalogs against the vectors the Python core is also
// tested with (tests/moqt/wire_vectors.json: "catalogs", "catalog_streams",
// "catalog_decodes", "bad_catalogs"): same bytes out, same verdicts in.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  AUDIO_FORMATS,
  AudioFormat,
  CATALOG_TRACK,
  Catalog,
  CatalogError,
  CatalogTrack,
  DEFAULT_FORMAT,
  MAX_CATALOG_BYTES,
  MAX_DEPTH,
  catalogNamespace,
  decodeCatalog,
  encodeCatalog,
  encodeCatalogObjectStream,
  sideCatalog,
} from "../../clutchcall/web/catalog.js";
import { DataStreamParser } from "../../clutchcall/web/wire.js";

const vectors = JSON.parse(readFileSync(new URL("../moqt/wire_vectors.json", import.meta.url), "utf-8"));

const toHex = (/** @type {Uint8Array} */ bytes) => Buffer.from(bytes).toString("hex");
const ascii = (/** @type {string} */ text) => Uint8Array.from(Buffer.from(text, "ascii"));

/**
 * A vector's payload: its parts (UTF-8 text, {hex}, {repeat, times}) joined.
 * @param {(string | {hex: string} | {repeat: string, times: number})[]} parts
 */
function payload(parts) {
  return new Uint8Array(
    Buffer.concat(
      parts.map((part) => {
        if (typeof part === "string") return Buffer.from(part, "utf-8");
        if ("hex" in part) return Buffer.from(part.hex, "hex");
        return Buffer.from(part.repeat.repeat(part.times), "utf-8");
      }),
    ),
  );
}

/** @param {{codec: string, sample_rate: number, channels: number, frame_ms: number}} f */
const format = (f) => new AudioFormat({ codec: f.codec, sampleRate: f.sample_rate, channels: f.channels, frameMs: f.frame_ms });

/** A decoded track in the vectors' shape. @param {CatalogTrack} t */
function fields(t) {
  const f = t.format;
  return {
    name: t.name,
    namespace: t.namespace,
    packaging: t.packaging,
    isLive: t.isLive,
    role: t.role,
    codec: t.codec,
    samplerate: t.samplerate,
    channelConfig: t.channelConfig,
    bitrate: t.bitrate,
    maxGroupDuration: t.maxGroupDuration,
    format: f === null ? null : { codec: f.codec, sample_rate: f.sampleRate, channels: f.channels, frame_ms: f.frameMs },
  };
}

test("a side's catalog encodes to the Python encoder's exact bytes", () => {
  assert.ok(vectors.catalogs.length >= 5);
  for (const v of vectors.catalogs) {
    const fmt = format(v.format);
    const bytes = encodeCatalog(sideCatalog(v.call_sid, v.track, fmt));
    assert.equal(Buffer.from(bytes).toString("latin1"), v.json, v.why);
    assert.ok(bytes.every((b) => b >= 0x20 && b < 0x7f), `${v.why}: ASCII only`);
    const decoded = decodeCatalog(bytes);
    assert.ok(decoded.formatOf(v.track)?.equals(fmt), v.why);
    assert.equal(decoded.tracks[0].namespace, `voice/${v.call_sid}`);
  }
});

test("the browser's default format is the first vector", () => {
  const [first] = vectors.catalogs;
  assert.ok(DEFAULT_FORMAT.equals(format(first.format)));
  assert.equal(toHex(encodeCatalog(sideCatalog(first.call_sid, "uplink", DEFAULT_FORMAT))), toHex(ascii(first.json)));
});

test("each catalog version is object 0 alone in its group, as CatalogPublisher sends it", () => {
  for (const v of vectors.catalog_streams) {
    for (const version of v.versions) {
      const bytes = encodeCatalogObjectStream({
        trackAlias: v.track_alias,
        groupId: version.group_id,
        payload: ascii(version.payload),
      });
      assert.equal(toHex(bytes), version.hex);
      const [header, object] = new DataStreamParser().feed(bytes, true);
      assert.deepEqual(header, {
        kind: "subgroup",
        streamType: 0x18,
        trackAlias: v.track_alias,
        groupId: version.group_id,
        subgroupId: 0,
        publisherPriority: 0,
        hasExtensions: false,
        endOfGroup: true,
      });
      assert.deepEqual(object, { kind: "object", objectId: 0, payload: ascii(version.payload), status: 0, extensions: [] });
    }
    // The payloads are what encodeCatalog makes for those formats.
    const [first, second] = v.versions.map((/** @type {any} */ x) => decodeCatalog(ascii(x.payload)));
    assert.equal(toHex(encodeCatalog(first)), toHex(ascii(v.versions[0].payload)));
    assert.ok(second.formatOf(v.track)?.equals(new AudioFormat({ codec: "pcm16", sampleRate: 16000 })));
  }
});

test("catalogs decode to the fields and formats the Python decoder finds", () => {
  assert.ok(vectors.catalog_decodes.length >= 10);
  for (const v of vectors.catalog_decodes) {
    const catalog = decodeCatalog(payload(v.payload));
    assert.equal(catalog.version, v.version, v.why);
    assert.deepEqual(catalog.tracks.map(fields), v.tracks, v.why);
  }
});

test("every hostile catalog throws CatalogError, as in Python", () => {
  assert.ok(vectors.bad_catalogs.length >= 50);
  for (const v of vectors.bad_catalogs) {
    assert.throws(() => decodeCatalog(payload(v.payload)), CatalogError, v.why);
  }
});

test("hostile inputs fail fast and typed, whatever their shape", () => {
  // An oversize object is refused by its length, before any parsing.
  const huge = new Uint8Array(1 << 20).fill(0x5b); // 1 MiB of "["
  assert.throws(() => decodeCatalog(huge), /larger than 16384/);
  // Nesting is bounded at MAX_DEPTH (32), counted before parsing.
  const nested = (/** @type {number} */ n) =>
    ascii(`{"version": "draft-01", "tracks": [], "x": ${"[".repeat(n - 1)}${"]".repeat(n - 1)}}`);
  assert.equal(decodeCatalog(nested(MAX_DEPTH)).tracks.length, 0);
  assert.throws(() => decodeCatalog(nested(MAX_DEPTH + 1)), /nest deeper than 32/);
  // An ArrayBuffer reads like a Uint8Array.
  const good = encodeCatalog(sideCatalog("CA1", "uplink", DEFAULT_FORMAT));
  assert.ok(decodeCatalog(good.slice().buffer).formatOf("uplink")?.equals(DEFAULT_FORMAT));
  // Every error is a CatalogError carrying its reason.
  try {
    decodeCatalog(ascii('{"version": "draft-01", "tracks": [{"name": "a", "packaging": "loc", "isLive": 1}]}'));
    assert.fail("accepted");
  } catch (error) {
    assert.ok(error instanceof CatalogError && error.name === "CatalogError");
    assert.match(/** @type {Error} */ (error).message, /isLive/);
  }
  // The decoded catalog is read-only: a later page script cannot alter what was declared.
  const catalog = decodeCatalog(good);
  assert.throws(() => {
    /** @type {any} */ (catalog.tracks)[0] = null;
  }, TypeError);
  assert.throws(() => {
    /** @type {any} */ (catalog.tracks[0]).samplerate = 8000;
  }, TypeError);
  // Encoding refuses a catalog above the bound, as Python's encoder does.
  const many = Array.from({ length: 200 }, (_, n) => CatalogTrack.audio(`track-${n}`, DEFAULT_FORMAT, "voice/CA1"));
  assert.throws(() => encodeCatalog(new Catalog(many)), CatalogError);
  assert.ok(encodeCatalog(new Catalog(many.slice(0, 16))).length <= MAX_CATALOG_BYTES);
});

test("AudioFormat accepts exactly the codec table, like the Python AudioFormat", () => {
  let accepted = 0;
  for (const [codec, rule] of Object.entries(AUDIO_FORMATS)) {
    for (const sampleRate of [8000, 11025, 12000, 16000, 24000, 32000, 44100, 48000, 96000]) {
      for (const channels of [0, 1, 2, 3]) {
        for (const frameMs of [5, 10, 20, 25, 30, 40, 60, 120]) {
          const ok = rule.sampleRates.includes(sampleRate) && rule.channels.includes(channels) && rule.frameMs.includes(frameMs);
          const make = () => new AudioFormat({ codec, sampleRate, channels, frameMs });
          if (ok) {
            assert.equal(String(make()), `${codec} ${sampleRate} Hz ${channels} ch ${frameMs} ms`);
            accepted++;
          } else {
            assert.throws(make, CatalogError, `${codec} ${sampleRate} ${channels} ${frameMs}`);
          }
        }
      }
    }
  }
  assert.equal(accepted, 1 * 2 * 4 + 7 * 2 * 5 + 1 * 1 * 5 * 2);
  for (const codec of ["", "OPUS", "g711", "__proto__", "toString", null, 7]) {
    assert.throws(() => new AudioFormat({ codec: /** @type {any} */ (codec) }), CatalogError, String(codec));
  }
  for (const bad of [48000.5, "48000", true, NaN]) {
    assert.throws(() => new AudioFormat({ sampleRate: /** @type {any} */ (bad) }), CatalogError, String(bad));
  }
  assert.equal(new AudioFormat({ codec: "g711_ulaw" }).sampleRate, 8000);
  assert.equal(new AudioFormat({ codec: "pcm16" }).sampleRate, 48000);
  assert.equal(new AudioFormat({ codec: "pcm16", sampleRate: 16000 }).bitrate, 256000);
  assert.equal(new AudioFormat({ codec: "opus", channels: 2 }).bitrate, 64000);
  assert.equal(new AudioFormat({ codec: "g711_alaw", frameMs: 30 }).samplesPerFrame, 240);
  assert.ok(Object.isFrozen(DEFAULT_FORMAT));
});

test("catalog namespaces name the call and the side", () => {
  assert.equal(CATALOG_TRACK, "catalog");
  assert.deepEqual(catalogNamespace("CA1"), ["voice", "CA1"]);
  assert.deepEqual(catalogNamespace("CA1", "uplink"), ["voice", "CA1", "uplink"]);
  assert.deepEqual(catalogNamespace("CA1", "downlink"), ["voice", "CA1", "downlink"]);
  assert.throws(() => catalogNamespace("CA1", "catalog"), TypeError);
  assert.throws(() => sideCatalog("CA1", "sideways", DEFAULT_FORMAT), TypeError);
  const merged = new Catalog([
    CatalogTrack.audio("uplink", DEFAULT_FORMAT, "voice/CA1"),
    CatalogTrack.audio("downlink", new AudioFormat({ codec: "pcm16", sampleRate: 16000 }), "voice/CA1"),
  ]);
  assert.equal(String(merged.formatOf("downlink")), "pcm16 16000 Hz 1 ch 20 ms");
  assert.equal(merged.track("uplink", "voice/CA2"), null);
  assert.equal(merged.track("uplink", "voice/CA1")?.name, "uplink");
  assert.equal(new Catalog().formatOf("uplink"), null);
  assert.throws(() => merged.formatOf("catalog"), TypeError);
});
