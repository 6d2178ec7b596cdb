// Test instrumentation evaluated in the viewer page (never shipped): per presented video
// frame, how much the mouth region changed since the previous frame and how loud the
// avatar's audio is at that moment. Read back with window.__probe.samples.
(mouthBox) => {
  const video = document.querySelector("#avatar-video");
  const room = window.viewer.room;
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const thumb = document.createElement("canvas");
  thumb.width = thumb.height = 64;
  const thumbCtx = thumb.getContext("2d", { willReadFrequently: true });
  const probe = { samples: [], presented: 0, analyser: null, error: null };
  window.__probe = probe;

  // Audio level: a WebAudio analyser on the avatar's received audio track.
  const audioCtx = new AudioContext();
  const buf = new Float32Array(1024);
  function attachAnalyser() {
    for (const p of room.remoteParticipants.values()) {
      for (const pub of p.audioTrackPublications.values()) {
        if (!pub.track) continue;
        const src = audioCtx.createMediaStreamSource(new MediaStream([pub.track.mediaStreamTrack]));
        const an = audioCtx.createAnalyser();
        an.fftSize = 1024;
        src.connect(an);
        return an;
      }
    }
    return null;
  }
  function rms() {
    probe.analyser = probe.analyser || attachAnalyser();
    if (!probe.analyser) return 0;
    probe.analyser.getFloatTimeDomainData(buf);
    let s = 0;
    for (const v of buf) s += v * v;
    return Math.sqrt(s / buf.length);
  }

  let previous = null;
  const onFrame = (now, meta) => {
    try {
      const w = video.videoWidth, h = video.videoHeight;
      const [y0, y1, x0, x1] = mouthBox;
      const bx = Math.floor(x0 * w), by = Math.floor(y0 * h);
      const bw = Math.max(1, Math.ceil((x1 - x0) * w)), bh = Math.max(1, Math.ceil((y1 - y0) * h));
      // Whole-frame brightness and contrast from a 64x64 thumbnail; the mouth at full size.
      thumbCtx.drawImage(video, 0, 0, 64, 64);
      const whole = thumbCtx.getImageData(0, 0, 64, 64).data;
      let lum = 0, lum2 = 0, n = 0;
      for (let i = 0; i < whole.length; i += 4) {
        const l = 0.299 * whole[i] + 0.587 * whole[i + 1] + 0.114 * whole[i + 2];
        lum += l; lum2 += l * l; n++;
      }
      if (canvas.width !== bw || canvas.height !== bh) { canvas.width = bw; canvas.height = bh; }
      ctx.drawImage(video, bx, by, bw, bh, 0, 0, bw, bh);
      const mouth = ctx.getImageData(0, 0, bw, bh).data;
      let diff = 0;
      if (previous && previous.length === mouth.length) {
        for (let i = 0; i < mouth.length; i += 4) diff += Math.abs(mouth[i] - previous[i]) + Math.abs(mouth[i + 1] - previous[i + 1]);
        diff /= (mouth.length / 4) * 2;
      } else {
        diff = -1; // first frame, or the layer (resolution) changed
      }
      previous = mouth;
      probe.samples.push({
        t: meta.expectedDisplayTime, presented: meta.presentedFrames, w, h,
        mean: lum / n, std: Math.sqrt(Math.max(0, lum2 / n - (lum / n) ** 2)), diff, rms: rms(),
      });
    } catch (err) {
      probe.error = String(err);
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
  return true;
}
