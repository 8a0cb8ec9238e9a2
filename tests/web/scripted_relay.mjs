// A scripted MoQT relay behind a WebTransport double, for the Node tests of the
// client and the bridge (Node has no WebTransport; the browser tests in
// test_softphone_browser.py use the real relay). It speaks the real draft-14 wire
// format through wire.js and records what the client sent.
//
//   const relay = new ScriptedRelay();
//   const bridge = await attachCaller(sid, { relayUrl, token, webTransport: relay.dial });
//   await waitFor(() => relay.catalogObjects.length > 0);
import {
  ControlStreamParser,
  DRAFT_14,
  DataStreamParser,
  FilterType,
  MessageType,
  SetupParameter,
  SubscribeErrorCode,
  concat,
  encodeMessage,
} from "../../clutchcall/web/wire.js";
import { encodeCatalogObjectStream } from "../../clutchcall/web/catalog.js";

/**
 * Poll ``check`` until it returns something truthy; throws after ``timeoutMs``.
 * @template T
 * @param {() => T} check
 * @param {string} what
 * @param {number} [timeoutMs]
 * @returns {Promise<T>}
 */
export async function waitFor(check, what, timeoutMs = 5000) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** One WebTransport session, as the client sees it; the relay drives the other end. */
class TransportDouble {
  /** @param {ScriptedRelay} relay */
  constructor(relay) {
    this.relay = relay;
    this.parser = new ControlStreamParser();
    /** Everything the client sent on the control stream. @type {any[]} */
    this.messages = [];
    this.nextRequestId = 1;
    this.nextAlias = 0;
    /** SUBSCRIBEs this relay sent: request id -> {namespace, trackName, alias}. @type {Map<number, any>} */
    this.upstream = new Map();
    this.ready = Promise.resolve();
    /** @type {(info: {closeCode: number, reason: string}) => void} */
    this.resolveClosed = () => {};
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    this.isClosed = false;
    /** @type {ReadableStreamDefaultController<any> | null} */
    this.incoming = null;
    this.incomingUnidirectionalStreams = new ReadableStream({
      start: (controller) => {
        this.incoming = controller;
      },
    });
    /** @type {ReadableStreamDefaultController<Uint8Array> | null} */
    this.toClient = null;
    /** @type {ReadableStreamDefaultController<Uint8Array> | null} */
    this.datagramsIn = null;
    this.datagrams = {
      readable: new ReadableStream({
        start: (controller) => {
          this.datagramsIn = controller;
        },
      }),
      writable: new WritableStream(),
    };
  }

  async createBidirectionalStream() {
    const readable = new ReadableStream({
      start: (controller) => {
        this.toClient = controller;
      },
    });
    const writable = new WritableStream({ write: (chunk) => this.receive(chunk) });
    return { readable, writable };
  }

  async createUnidirectionalStream() {
    /** @type {Uint8Array} */
    let data = new Uint8Array(0);
    return new WritableStream({
      write: (chunk) => {
        data = concat(data, chunk);
      },
      close: () => this.relay.streamArrived(this, data),
    });
  }

  /** @param {{closeCode?: number, reason?: string}} [info] */
  close(info = {}) {
    if (this.isClosed) return;
    this.isClosed = true;
    for (const controller of [this.toClient, this.incoming, this.datagramsIn]) {
      try {
        controller?.close();
      } catch {
        // already closed
      }
    }
    this.resolveClosed({ closeCode: info.closeCode ?? 0, reason: info.reason ?? "" });
  }

  /** @param {any} message */
  send(message) {
    if (!this.isClosed) this.toClient?.enqueue(encodeMessage(message));
  }

  /** @param {Uint8Array} bytes a whole unidirectional stream to the client */
  sendStream(bytes) {
    if (this.isClosed) return;
    this.incoming?.enqueue(
      new ReadableStream({
        start(controller) {
          controller.enqueue(bytes);
          controller.close();
        },
      }),
    );
  }

  /** @param {Uint8Array} chunk */
  receive(chunk) {
    for (const message of this.parser.feed(chunk)) {
      this.messages.push(message);
      this.relay.handle(this, message);
    }
  }
}

/**
 * The relay: answers setup, accepts namespaces (subscribing to the catalog of each
 * catalog namespace, as the dev relay does), accepts subscriptions, and serves the
 * downlink catalog versions it is given.
 */
export class ScriptedRelay {
  /**
   * @param {{refuseCatalogs?: boolean}} [options] refuseCatalogs: refuse every catalog
   *   namespace and catalog SUBSCRIBE, as a relay that knows no catalogs might
   */
  constructor({ refuseCatalogs = false } = {}) {
    this.refuseCatalogs = refuseCatalogs;
    /** @type {TransportDouble[]} */
    this.sessions = [];
    /** Catalog objects the client published: {session, namespace, streamType, ...}. @type {any[]} */
    this.catalogObjects = [];
    /** Raw bytes of each stream the client sent. @type {Uint8Array[]} */
    this.streams = [];
    /** Catalog SUBSCRIBEs from the client that were accepted: {session, requestId, alias}. @type {any[]} */
    this.catalogSubscribers = [];
    /** The WebTransport factory to hand to the client (``webTransport`` option). */
    this.dial = (/** @type {string} */ _url, /** @type {any} */ _options) => {
      const transport = new TransportDouble(this);
      this.sessions.push(transport);
      return /** @type {any} */ (transport);
    };
  }

  /** The current session. */
  get session() {
    return this.sessions[this.sessions.length - 1];
  }

  /**
   * Messages of one type the client sent, over all sessions.
   * @param {number} type
   */
  sent(type) {
    return this.sessions.flatMap((s) => s.messages.filter((m) => m.type === type));
  }

  /**
   * @param {TransportDouble} t
   * @param {any} msg
   */
  handle(t, msg) {
    switch (msg.type) {
      case MessageType.CLIENT_SETUP:
        t.send({ type: MessageType.SERVER_SETUP, version: DRAFT_14, parameters: [[SetupParameter.MAX_REQUEST_ID, 100]] });
        return;
      case MessageType.PUBLISH_NAMESPACE: {
        const catalog = msg.namespace.length === 3;
        if (catalog && this.refuseCatalogs) {
          t.send({ type: MessageType.PUBLISH_NAMESPACE_ERROR, requestId: msg.requestId, errorCode: 0x4, reason: "no catalogs here" });
          return;
        }
        if (catalog) {
          const requestId = t.nextRequestId;
          t.nextRequestId += 2;
          t.upstream.set(requestId, { namespace: msg.namespace, trackName: "catalog", alias: null });
          t.send({
            type: MessageType.SUBSCRIBE,
            requestId,
            namespace: msg.namespace,
            trackName: "catalog",
            subscriberPriority: 0,
            groupOrder: 1,
            forward: 1,
            filterType: FilterType.LARGEST_OBJECT,
            start: null,
            endGroup: null,
            parameters: [],
          });
        }
        t.send({ type: MessageType.PUBLISH_NAMESPACE_OK, requestId: msg.requestId });
        return;
      }
      case MessageType.SUBSCRIBE_OK: {
        const upstream = t.upstream.get(msg.requestId);
        if (upstream) upstream.alias = msg.trackAlias;
        return;
      }
      case MessageType.SUBSCRIBE: {
        if (msg.trackName === "catalog" && this.refuseCatalogs) {
          t.send({
            type: MessageType.SUBSCRIBE_ERROR,
            requestId: msg.requestId,
            errorCode: SubscribeErrorCode.TRACK_DOES_NOT_EXIST,
            reason: "no catalogs here",
          });
          return;
        }
        const alias = t.nextAlias++;
        t.send({
          type: MessageType.SUBSCRIBE_OK,
          requestId: msg.requestId,
          trackAlias: alias,
          expires: 0,
          groupOrder: 1,
          largest: null,
          parameters: [],
        });
        if (msg.trackName === "catalog") {
          this.catalogSubscribers.push({ session: t, requestId: msg.requestId, alias, subscribe: msg });
        }
        return;
      }
      default:
        return;
    }
  }

  /**
   * A stream the client finished: keep it, and decode it if it is a catalog's.
   * @param {TransportDouble} t
   * @param {Uint8Array} bytes
   */
  streamArrived(t, bytes) {
    this.streams.push(bytes);
    const [header, ...objects] = new DataStreamParser().feed(bytes, true);
    if (header.kind !== "subgroup") return;
    const upstream = [...t.upstream.values()].find((u) => u.alias === header.trackAlias);
    if (!upstream) return;
    for (const object of objects) {
      if (object.kind !== "object") continue;
      this.catalogObjects.push({ session: t, namespace: upstream.namespace, header, object, bytes });
    }
  }

  /**
   * Send one catalog version to every client subscription of the catalog ``namespace``.
   * @param {string[]} namespace
   * @param {number} groupId
   * @param {Uint8Array} payload
   */
  publishCatalog(namespace, groupId, payload) {
    for (const sub of this.catalogSubscribers) {
      if (sub.session.isClosed || JSON.stringify(sub.subscribe.namespace) !== JSON.stringify(namespace)) continue;
      sub.session.sendStream(encodeCatalogObjectStream({ trackAlias: sub.alias, groupId, payload }));
    }
  }
}
