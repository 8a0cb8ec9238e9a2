// The AudioWorkletGlobalScope names that worklets.js uses (TypeScript's DOM library
// describes the main thread only).
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: AudioWorkletNodeOptions);
}
declare function registerProcessor(
  name: string,
  processorCtor: new (options: AudioWorkletNodeOptions) => AudioWorkletProcessor,
): void;
/** The sample rate of the AudioContext the worklet runs in. */
declare const sampleRate: number;
/** The context time of the block being processed, in seconds. */
declare const currentTime: number;
