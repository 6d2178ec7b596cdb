// AudioWorklet (test instrumentation): reports the context frame of each click onset in
// the avatar's received audio: the first sample above the threshold after >= 60 ms quiet.
class ClickTap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.lastLoud = -1e9;
    this.threshold = 0.25;
  }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) {
      for (let i = 0; i < ch.length; i++) {
        if (Math.abs(ch[i]) > this.threshold) {
          const frame = currentFrame + i;
          if (frame - this.lastLoud > 0.06 * sampleRate) this.port.postMessage({ frame });
          this.lastLoud = frame;
        }
      }
    }
    return true;
  }
}
registerProcessor("click-tap", ClickTap);
