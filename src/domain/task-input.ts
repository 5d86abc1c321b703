import type {
  AspectRatio, FileType, ModelName, PersonGeneration, Resolution, StorageMode, Switch,
} from './models';

/**
 * A submit request after validation: canonical enum spellings, empty optional strings removed, `tasks_priority` a
 * number, defaults applied where the contract names one. This is what the task stores and what providers read.
 */
export interface InputImageRef {
  readonly type: FileType;
  /** Set when `type` is File: the relay's own file id (or, for Tencent channels, a digit-only VOD FileId). */
  readonly file_id?: string;
  /** Set when `type` is Url. */
  readonly url?: string;
  readonly text?: string;
}

export interface OutputConfig {
  readonly storage_mode: StorageMode;
  readonly resolution?: Resolution;
  readonly aspect_ratio?: AspectRatio;
  readonly person_generation?: PersonGeneration;
  readonly input_compliance_check?: Switch;
  readonly output_compliance_check?: Switch;
}

export interface TaskInput {
  readonly model_name: ModelName;
  readonly model_version: string;
  readonly prompt?: string;
  readonly file_infos: readonly InputImageRef[];
  readonly negative_prompt?: string;
  readonly enhance_prompt?: Switch;
  readonly output_config: OutputConfig;
  readonly session_id?: string;
  readonly session_context?: string;
  readonly tasks_priority: number;
  readonly ext_info?: string;
}
