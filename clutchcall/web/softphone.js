// The dev engine's softphone page: dial or join a call, talk and listen.
// Everything goes through the page's backend (/softphone/api: a page token bound to
// one call, never the API key) and the relay, with the module a page of yours uses.

import { audioBridge, captureMicrophone, dbfs, OpusPlayer } from "./clutchcall.js";

const ECHO_NUMBER = "+15005550004";
const POLL_MS = 500;
const ENDED = new Set(["completed", "failed", "no_answer"]);
const RTT_WINDOW = 200;

/** @param {string} id */
function $(id) {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`no element #${id}`);
  return element;
}

/** An error whose ``fatal`` flag stops the bridge from retrying. */
class PageError extends Error {
  /** @param {string} message @param {number} status */
  constructor(message, status) {
    super(message);
    this.status = status;
    this.fatal = status === 401 || status === 404 || status === 409;
  }
}

/**
 * State of the page, readable from devtools (and by the browser tests).
 * @type {{
 *   pageToken: string | null, call: any, callSid: string | null, status: string | null,
 *   bridge: import("./bridge.js").CallerBridge | null,
 *   mic: import("./audio.js").MicCapture | null, player: OpusPlayer | null,
 *   context: AudioContext | null, rttMs: number[], rttP50Ms: number | null,
 *   framesIn: number, events: string[], error: string | null,
 * }}
 */
const state = {
  pageToken: null,
  call: null,
  callSid: null,
  status: null,
  bridge: null,
  mic: null,
  player: null,
  context: null,
  rttMs: [],
  rttP50Ms: null,
  framesIn: 0,
  events: [],
  error: null,
};
Object.assign(window, { softphone: state });

/** @param {string} text */
function log(text) {
  const stamp = new Date().toLocaleTimeString();
  state.events.push(text);
  const item = document.createElement("li");
  item.textContent = `${stamp}  ${text}`;
  const list = $("log");
  list.prepend(item);
  while (list.children.length > 200) list.lastChild?.remove();
}

/**
 * @param {string} path
 * @param {{method?: string, body?: any}} [options]
 */
async function api(path, { method = "GET", body } = {}) {
  /** @type {Record<string, string>} */
  const headers = {};
  if (state.pageToken !== null) headers.Authorization = `Bearer ${state.pageToken}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/softphone/api/${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json().catch(() => ({}));
  if (!response.ok) throw new PageError(json.detail ?? `HTTP ${response.status}`, response.status);
  return json;
}

/** @param {number[]} values */
function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function showCall() {
  const call = state.call;
  if (!call) return;
  const status = $("status");
  status.textContent = call.status;
  status.className = `status ${call.status}`;
  $("sid").textContent = call.sid;
  $("call-to").textContent = call.to;
  $("call-agent").textContent = call.agent ?? "none";
  const started = call.answeredAt ? Date.parse(call.answeredAt) : null;
  const ended = call.endedAt ? Date.parse(call.endedAt) : Date.now();
  if (started !== null) {
    const seconds = Math.max(0, Math.round((ended - started) / 1000));
    $("duration").textContent = `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
  }
}

/** Meter readings: peaks held, then falling 3 dB per refresh. */
const meters = { mic: -100, speaker: -100 };

function showMedia() {
  const mic = state.mic;
  const player = state.player;
  meters.mic = Math.max(mic && !mic.stopped ? dbfs(mic.level) : -100, meters.mic - 3);
  meters.speaker = Math.max(player ? dbfs(player.stats.level) : -100, meters.speaker - 3);
  const micDb = meters.mic;
  const speakerDb = meters.speaker;
  /** @type {HTMLMeterElement} */ ($("mic-level")).value = Math.max(-60, micDb);
  /** @type {HTMLMeterElement} */ ($("speaker-level")).value = Math.max(-60, speakerDb);
  $("mic-db").textContent = micDb > -100 ? `${micDb.toFixed(0)} dB` : "off";
  $("speaker-db").textContent = speakerDb > -100 ? `${speakerDb.toFixed(0)} dB` : "–";
  const p50 = state.rttP50Ms;
  $("rtt").textContent =
    p50 === null ? (state.call?.to === ECHO_NUMBER ? "waiting for echo…" : "(echo number only)") : `p50 ${p50.toFixed(0)} ms`;
  const stats = state.bridge?.stats;
  if (stats) $("frames").textContent = `out ${stats.framesOut} · in ${stats.framesIn} · dropped ${stats.dropped}`;
}

/** @param {Uint8Array} frame @param {number} tsUs */
function onDownlink(frame, tsUs) {
  state.framesIn++;
  state.player?.push(tsUs, frame);
  if (state.call?.to === ECHO_NUMBER) {
    // The echo returns this page's own frames with their capture timestamps.
    const rtt = (performance.timeOrigin + performance.now()) / 1000 - tsUs / 1e6;
    if (rtt >= 0 && rtt < 10) {
      state.rttMs.push(rtt * 1000);
      if (state.rttMs.length > RTT_WINDOW) state.rttMs.shift();
      state.rttP50Ms = median(state.rttMs);
    }
  }
}

/** @param {boolean} inCall */
function setInCall(inCall) {
  $("call-panel").hidden = !inCall;
  for (const id of ["call", "join"]) /** @type {HTMLButtonElement} */ ($(id)).disabled = inCall;
}

/**
 * Start the media of a page session: player, bridge, microphone.
 * @param {{pageToken: string, call: any, bridge: any}} session
 * @param {AudioContext} context
 */
async function startMedia(session, context) {
  state.pageToken = session.pageToken;
  state.call = session.call;
  state.callSid = session.call.sid;
  state.status = session.call.status;
  state.rttMs = [];
  state.rttP50Ms = null;
  state.framesIn = 0;
  setInCall(true);
  showCall();
  log(`call ${session.call.sid} to ${session.call.to}: ${session.call.status}`);
  const player = new OpusPlayer(context, { sampleRate: 48000, channels: 1 });
  state.player = player;
  await player.start();
  let first = /** @type {any} */ (session.bridge);
  const bridge = await audioBridge.attachCaller(session.call.sid, {
    codec: "opus",
    credentials: async (fresh) => {
      const given = first;
      first = null;
      if (given !== null && !fresh) return given;
      return api("bridge-token", { method: "POST", body: {} });
    },
    onDownlink,
  });
  state.bridge = bridge;
  bridge.onEnded = (error) => log(`audio ended${error ? `: ${error}` : ""}`);
  log("audio bridge attached (uplink published, downlink subscribed)");
  state.mic = await captureMicrophone(
    { write: (tsUs, frame) => bridge.publishUplink(frame, tsUs) },
    { context, audioConstraints: { echoCancellation: true, autoGainControl: true, noiseSuppression: true } },
  );
  log("microphone on");
  /** @type {HTMLButtonElement} */ ($("mute")).textContent = "Stop mic";
}

async function stopMedia() {
  state.mic?.stop();
  state.mic = null;
  const bridge = state.bridge;
  state.bridge = null;
  await bridge?.close();
  state.player?.close();
  state.player = null;
  await state.context?.close().catch(() => {});
  state.context = null;
}

/** @param {any} request */
async function begin(request) {
  state.error = null;
  // Created inside the click handler, so that the browser lets it play.
  const context = new AudioContext({ sampleRate: 48000, latencyHint: "interactive" });
  state.context = context;
  try {
    const session = await api("sessions", { method: "POST", body: request });
    await startMedia(session, context);
  } catch (error) {
    state.error = String(error);
    log(`error: ${error instanceof Error ? error.message : error}`);
    await stopMedia();
    if (state.call === null || ENDED.has(state.call.status)) setInCall(false);
  }
}

/** Show a fresh snapshot of the call; end the media once the call is over. @param {any} call */
async function applyCall(call) {
  const previous = state.call;
  if (previous !== null && ENDED.has(previous.status)) return;
  if (call.status !== previous?.status) log(`status: ${call.status}${call.endReason ? ` (${call.endReason})` : ""}`);
  if (call.agent !== previous?.agent) log(`agent: ${call.agent ?? "none"}`);
  state.call = call;
  state.status = call.status;
  showCall();
  if (ENDED.has(call.status)) {
    await stopMedia();
    log("call over");
    setInCall(false);
    $("call-panel").hidden = false;
  }
}

async function poll() {
  if (state.pageToken !== null && state.call !== null && !ENDED.has(state.call.status)) {
    try {
      await applyCall(await api("call"));
    } catch (error) {
      log(`status poll failed: ${error instanceof Error ? error.message : error}`);
    }
  }
  setTimeout(poll, POLL_MS);
}

async function init() {
  const config = await api("config");
  for (const select of [$("agent"), $("transfer-agent")]) {
    for (const agent of config.agents) {
      const option = document.createElement("option");
      option.value = agent;
      option.textContent = agent;
      select.append(option);
    }
  }
  $("dial-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const to = /** @type {HTMLInputElement} */ ($("to")).value.trim();
    const agent = /** @type {HTMLSelectElement} */ ($("agent")).value;
    begin(agent ? { to, agent } : { to });
  });
  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    begin({ sid: /** @type {HTMLInputElement} */ ($("join-sid")).value.trim() });
  });
  $("hangup").addEventListener("click", async () => {
    try {
      log("hanging up");
      await applyCall(await api("hangup", { method: "POST", body: {} }));
    } catch (error) {
      log(`hang up failed: ${error instanceof Error ? error.message : error}`);
    }
  });
  $("transfer").addEventListener("click", async () => {
    const agent = /** @type {HTMLSelectElement} */ ($("transfer-agent")).value;
    try {
      await applyCall(await api("transfer", { method: "POST", body: { agent } }));
      log(`transferred to ${agent}`);
    } catch (error) {
      log(`transfer failed: ${error instanceof Error ? error.message : error}`);
    }
  });
  $("mute").addEventListener("click", async () => {
    const button = /** @type {HTMLButtonElement} */ ($("mute"));
    if (state.mic !== null && !state.mic.stopped) {
      state.mic.stop(); // the uplink stays published: the call hears silence
      log("microphone off");
      button.textContent = "Start mic";
    } else if (state.bridge !== null && state.context !== null) {
      const bridge = state.bridge;
      state.mic = await captureMicrophone(
        { write: (tsUs, frame) => bridge.publishUplink(frame, tsUs) },
        { context: state.context },
      );
      log("microphone on");
      button.textContent = "Stop mic";
    }
  });
  setInterval(showMedia, 100);
  setTimeout(poll, POLL_MS);
  document.body.dataset.ready = "true";
}

init().catch((error) => {
  state.error = String(error);
  log(`the page could not start: ${error}`);
});
