// A/V sync probe (test instrumentation, never shipped). Joins the room with a token from
// /token, plays the avatar's audio and video as the viewer page does, and records:
//  - flashes: for every presented video frame (requestVideoFrameCallback) its mean luma
//    and expectedDisplayTime, the time it is shown (performance clock, ms);
//  - clicks: the output time of each click onset in the received audio, from an
//    AudioWorklet tap mapped to the performance clock with AudioContext.getOutputTimestamp();
//  - buffers: the audio and video jitter-buffer delays and targets from getStats.
import { Room, RoomEvent, Track, type RemoteTrack } from "livekit-client";

type Frame = { t: number; luma: number; w: number };
const out = {
  connected: false,
  video: false,
  audio: false,
  frames: [] as Frame[],
  clicks: [] as number[],
  buffers: {} as Record<string, { delay: number; target: number } | null>,
  error: "",
};
(window as unknown as { probe: typeof out }).probe = out;

const video = document.getElementById("v") as HTMLVideoElement;
const thumb = document.createElement("canvas");
thumb.width = thumb.height = 16;
const tctx = thumb.getContext("2d", { willReadFrequently: true })!;
const ctx = new AudioContext();
let videoTrack: RemoteTrack | undefined;
let audioTrack: RemoteTrack | undefined;

function onFrame(_now: number, meta: VideoFrameCallbackMetadata): void {
  tctx.drawImage(video, 0, 0, 16, 16);
  const px = tctx.getImageData(0, 0, 16, 16).data;
  let sum = 0;
  for (let i = 0; i < px.length; i += 4) sum += 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
  out.frames.push({ t: meta.expectedDisplayTime, luma: sum / 256, w: meta.width });
  video.requestVideoFrameCallback(onFrame);
}

async function tapAudio(track: RemoteTrack): Promise<void> {
  await ctx.audioWorklet.addModule("click-tap.worklet.js");
  const node = new AudioWorkletNode(ctx, "click-tap");
  node.port.onmessage = (ev: MessageEvent<{ frame: number }>) => {
    // Output time of that frame: the latest (contextTime -> performanceTime) pair, moved
    // along by the frame's distance from it. The pair is fresh (taken now), so the clocks'
    // drift between the two is negligible.
    const ts = ctx.getOutputTimestamp();
    out.clicks.push(ts.performanceTime! + (ev.data.frame / ctx.sampleRate - ts.contextTime!) * 1000);
  };
  ctx.createMediaStreamSource(new MediaStream([track.mediaStreamTrack])).connect(node);
  await ctx.resume();
}

// The receiver's own delays (WebRTC stats): how long each stream waits in its jitter
// buffer, and the target delay it aims for (which A/V sync would raise on the faster one).
async function sampleBuffers(): Promise<void> {
  if (!videoTrack || !audioTrack) return;
  const [vs, as] = await Promise.all([videoTrack.getRTCStatsReport(), audioTrack.getRTCStatsReport()]);
  const ms = (r: RTCStatsReport | undefined) => {
    const s = [...(r?.values() ?? [])].find((x) => x.type === "inbound-rtp");
    if (!s || !s.jitterBufferEmittedCount) return null;
    return {
      delay: (1000 * s.jitterBufferDelay) / s.jitterBufferEmittedCount,
      target: (1000 * s.jitterBufferTargetDelay) / s.jitterBufferEmittedCount,
    };
  };
  out.buffers = { audio: ms(as), video: ms(vs) };
}

async function main(): Promise<void> {
  const room = new Room({ adaptiveStream: false });
  room.on(RoomEvent.TrackSubscribed, (track) => {
    if (track.kind === Track.Kind.Video && !videoTrack) {
      videoTrack = track;
      track.attach(video);
      video.requestVideoFrameCallback(onFrame);
      out.video = true;
    } else if (track.kind === Track.Kind.Audio && !audioTrack) {
      audioTrack = track;
      // Played through an element, as the viewer does: Chrome renders remote WebRTC
      // audio (and feeds WebAudio) only for tracks that are being played.
      document.getElementById("audio")!.appendChild(track.attach());
      tapAudio(track).then(() => (out.audio = true), (e) => (out.error = String(e)));
    }
  });
  const room_name = new URLSearchParams(location.search).get("room")!;
  const resp = await fetch(`token?room=${encodeURIComponent(room_name)}`);
  const { url, token } = await resp.json();
  await room.connect(url, token);
  out.connected = true;
  setInterval(() => sampleBuffers().catch(() => undefined), 500);
}

main().catch((e) => (out.error = String(e)));
