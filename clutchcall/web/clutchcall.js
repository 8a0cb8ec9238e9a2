// The browser softphone module of clutchcall: the seed's "moqt" subpath helpers.
// Plain ES modules, no bundler: import this file from the dev engine
// (http://127.0.0.1:8765/softphone/clutchcall.js) or copy the folder into your app.
export { captureMicrophone, dbfs, loadWorklets, MicCapture, OpusPlayer } from "./audio.js";
export { attachCaller, audioBridge, AUDIO_CODECS, CallerBridge } from "./bridge.js";
export {
  AudioFormat,
  Catalog,
  CatalogError,
  CatalogTrack,
  catalogNamespace,
  decodeCatalog,
  DEFAULT_FORMAT,
  encodeCatalog,
  sideCatalog,
} from "./catalog.js";
export {
  AudioPublication,
  AudioSubscription,
  BridgeAuthError,
  BridgeClosedError,
  BridgeConnectError,
  BridgeError,
  BridgeTrackError,
  CatalogPublication,
  CatalogSubscription,
  certificateHash,
  monotonicUs,
  MoqtClient,
} from "./moqt.js";
