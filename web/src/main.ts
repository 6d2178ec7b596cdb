// The demo's viewer: joins a LiveKit room with a token from the local viewer server,
// shows the avatar (video + audio), the live transcript, a chat box, a microphone toggle,
// the connection state and a video-quality selector.
import {
  ConnectionState,
  ParticipantKind,
  RemoteParticipant,
  RemoteTrack,
  RemoteTrackPublication,
  Room,
  RoomEvent,
  Track,
  VideoQuality,
  type TextStreamReader,
} from "livekit-client";

// Topics and attributes of livekit-agents 1.8 (livekit/agents/types.py).
const TOPIC_TRANSCRIPTION = "lk.transcription";
const TOPIC_CHAT = "lk.chat";
const ATTR_SEGMENT_ID = "lk.segment_id";
const ATTR_AGENT_STATE = "lk.agent.state";
const ATTR_PUBLISH_ON_BEHALF = "lk.publish_on_behalf";

type Quality = "auto" | "high" | "medium" | "low";
const QUALITY: Record<Exclude<Quality, "auto">, VideoQuality> = {
  high: VideoQuality.HIGH,
  medium: VideoQuality.MEDIUM,
  low: VideoQuality.LOW,
};

function $<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`viewer page is missing #${id}`);
  return el as T;
}

const ui = {
  conn: $("conn"),
  connText: $("conn-text"),
  agentState: $("agent-state"),
  video: $<HTMLVideoElement>("avatar-video"),
  placeholder: $("placeholder"),
  startAudio: $<HTMLButtonElement>("start-audio"),
  videoInfo: $("video-info"),
  mic: $<HTMLButtonElement>("mic"),
  micText: $("mic-text"),
  quality: $<HTMLSelectElement>("quality"),
  audioSink: $("audio-sink"),
  transcript: $<HTMLOListElement>("transcript"),
  form: $<HTMLFormElement>("chat-form"),
  input: $<HTMLInputElement>("chat-input"),
  send: $<HTMLButtonElement>("chat-send"),
  error: $("error"),
};

// Simulcast layers are chosen per subscriber. "auto" follows the element's size on screen
// (we drive it ourselves rather than with adaptiveStream, which would also cap the pinned
// choices to the element size); the SFU still steps down on its own under congestion.
const room = new Room({ adaptiveStream: false, dynacast: true });
let videoPub: RemoteTrackPublication | undefined;
let quality: Quality = "auto";

function showError(message: string): void {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

function setConnection(state: ConnectionState): void {
  const label: Record<string, string> = {
    [ConnectionState.Connecting]: "Connecting",
    [ConnectionState.Connected]: "Connected",
    [ConnectionState.Reconnecting]: "Reconnecting",
    [ConnectionState.SignalReconnecting]: "Reconnecting",
    [ConnectionState.Disconnected]: "Disconnected",
  };
  ui.conn.dataset.state = state;
  ui.connText.textContent = label[state] ?? state;
  const live = state === ConnectionState.Connected;
  ui.mic.disabled = !live;
  ui.input.disabled = !live;
  ui.send.disabled = !live;
}

// -- the avatar's media ------------------------------------------------------------------

function isAvatarSide(p: RemoteParticipant): boolean {
  return p.kind === ParticipantKind.AGENT || ATTR_PUBLISH_ON_BEHALF in p.attributes;
}

function applyQuality(): void {
  if (!videoPub) return;
  if (quality === "auto") {
    const r = ui.video.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    if (r.width > 0) videoPub.setVideoDimensions({ width: Math.round(r.width * dpr), height: Math.round(r.height * dpr) });
  } else {
    videoPub.setVideoQuality(QUALITY[quality]);
  }
}

new ResizeObserver(() => quality === "auto" && applyQuality()).observe(ui.video);

ui.quality.addEventListener("change", () => {
  quality = ui.quality.value as Quality;
  applyQuality();
});

function onTrackSubscribed(track: RemoteTrack, pub: RemoteTrackPublication, p: RemoteParticipant): void {
  if (track.kind === Track.Kind.Video) {
    // Several video tracks: keep the avatar's (the agent's own in in-process mode).
    if (videoPub && videoPub !== pub && !isAvatarSide(p)) return;
    videoPub = pub;
    track.attach(ui.video);
    ui.placeholder.hidden = true;
    ui.quality.disabled = false;
    applyQuality();
  } else if (track.kind === Track.Kind.Audio) {
    // The WebRTC stack lip-syncs the avatar's audio with its video (one stream id on the
    // wire), whichever elements play them.
    ui.audioSink.appendChild(track.attach());
  }
}

function onTrackUnsubscribed(track: RemoteTrack, pub: RemoteTrackPublication): void {
  track.detach().forEach((el) => el !== ui.video && el.remove());
  if (pub === videoPub) {
    videoPub = undefined;
    ui.placeholder.hidden = false;
    ui.videoInfo.hidden = true;
    ui.quality.disabled = true;
  }
}

// Resolution and frame rate as presented, so the effect of the quality choice is visible.
function watchFrames(): void {
  const v = ui.video as HTMLVideoElement & {
    requestVideoFrameCallback?: (cb: (now: number, meta: { presentedFrames: number }) => void) => number;
  };
  let last = { t: performance.now(), frames: 0 };
  let presented = 0;
  if (v.requestVideoFrameCallback) {
    const tick = (_now: number, meta: { presentedFrames: number }) => {
      presented = meta.presentedFrames;
      v.requestVideoFrameCallback!(tick);
    };
    v.requestVideoFrameCallback(tick);
  }
  setInterval(() => {
    const now = performance.now();
    const fps = ((presented - last.frames) * 1000) / (now - last.t);
    last = { t: now, frames: presented };
    if (!videoPub || !v.videoWidth) return;
    ui.videoInfo.hidden = false;
    ui.videoInfo.textContent = `${v.videoWidth}×${v.videoHeight} · ${fps.toFixed(0)} fps`;
  }, 1000);
}

// -- transcript and chat -----------------------------------------------------------------

const segments = new Map<string, HTMLLIElement>();

function addMessage(who: "agent" | "user", text: string, id?: string): HTMLLIElement {
  const li = document.createElement("li");
  li.className = `msg ${who}`;
  const name = document.createElement("span");
  name.className = "who";
  name.textContent = who === "agent" ? "Agent" : "You";
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(name, body);
  ui.transcript.appendChild(li);
  if (id) segments.set(id, li);
  li.scrollIntoView({ block: "end", behavior: "smooth" });
  return li;
}

async function onTranscription(reader: TextStreamReader, from: { identity: string }): Promise<void> {
  const attrs = reader.info.attributes ?? {};
  const id = attrs[ATTR_SEGMENT_ID] ?? reader.info.id;
  const who = from.identity === room.localParticipant.identity ? "user" : "agent";
  const li = segments.get(id) ?? addMessage(who, "", id);
  const body = li.querySelector(".text")!;
  li.classList.add("interim");
  // An agent reply streams word by word into one stream per segment; a user transcript
  // sends a new stream with the whole text at each update, which replaces the old text.
  let text = "";
  for await (const chunk of reader) {
    text += chunk;
    body.textContent = text;
    li.scrollIntoView({ block: "end" });
  }
  li.classList.remove("interim");
}

ui.form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = ui.input.value.trim();
  if (!text || room.state !== ConnectionState.Connected) return;
  ui.input.value = "";
  addMessage("user", text);
  try {
    await room.localParticipant.sendText(text, { topic: TOPIC_CHAT });
  } catch (err) {
    showError(`Message not sent: ${(err as Error).message}`);
  }
});

// -- microphone --------------------------------------------------------------------------

ui.mic.addEventListener("click", async () => {
  const on = !room.localParticipant.isMicrophoneEnabled;
  ui.mic.disabled = true;
  try {
    await room.localParticipant.setMicrophoneEnabled(on);
    showError("");
  } catch (err) {
    showError(`Microphone unavailable: ${(err as Error).message}`);
  } finally {
    const enabled = room.localParticipant.isMicrophoneEnabled;
    ui.mic.setAttribute("aria-pressed", String(enabled));
    ui.micText.textContent = enabled ? "Mic on" : "Mic off";
    ui.mic.disabled = room.state !== ConnectionState.Connected;
  }
});

// -- agent state (listening / thinking / speaking) ---------------------------------------

function showAgentState(p: RemoteParticipant): void {
  const state = p.attributes[ATTR_AGENT_STATE];
  if (p.kind !== ParticipantKind.AGENT || !state) return;
  ui.agentState.hidden = false;
  ui.agentState.textContent = state;
  ui.agentState.dataset.state = state;
}

// -- connect -----------------------------------------------------------------------------

function roomName(): string {
  const url = new URL(window.location.href);
  let name = url.searchParams.get("room");
  if (!name) {
    name = `demo-${Math.random().toString(36).slice(2, 8)}`;
    url.searchParams.set("room", name);
    // A reload rejoins the same room (and its agent) instead of starting another.
    history.replaceState(null, "", url);
  }
  return name;
}

async function connect(): Promise<void> {
  room
    .on(RoomEvent.ConnectionStateChanged, setConnection)
    .on(RoomEvent.TrackSubscribed, onTrackSubscribed)
    .on(RoomEvent.TrackUnsubscribed, onTrackUnsubscribed)
    .on(RoomEvent.ParticipantAttributesChanged, (_changed, p) => {
      if (p instanceof RemoteParticipant) showAgentState(p);
    })
    .on(RoomEvent.AudioPlaybackStatusChanged, () => {
      ui.startAudio.hidden = room.canPlaybackAudio;
    })
    .on(RoomEvent.Disconnected, (reason) => {
      if (reason !== undefined) showError(`Disconnected (${reason}). Reload the page to rejoin.`);
    });
  room.registerTextStreamHandler(TOPIC_TRANSCRIPTION, (reader, from) => {
    onTranscription(reader, from).catch((err) => console.warn("transcription stream failed", err));
  });
  ui.startAudio.addEventListener("click", () => room.startAudio());

  setConnection(ConnectionState.Connecting);
  const resp = await fetch(`token?room=${encodeURIComponent(roomName())}`);
  if (!resp.ok) throw new Error(`token endpoint: ${resp.status} ${await resp.text()}`);
  const { url, token } = (await resp.json()) as { url: string; token: string };
  await room.connect(url, token);
  room.remoteParticipants.forEach(showAgentState);
  ui.startAudio.hidden = room.canPlaybackAudio;
}

// A debugging handle (window.viewer.room in the console).
(window as unknown as { viewer: { room: Room } }).viewer = { room };
watchFrames();
connect().catch((err) => {
  setConnection(ConnectionState.Disconnected);
  showError(`Could not join: ${(err as Error).message}`);
});
