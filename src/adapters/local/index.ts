export {
  createLocalPreviewProvider,
  LOCAL_PREVIEW_ID,
  LOCAL_PREVIEW_PRODUCED_BY,
  type LocalPreviewOptions,
} from './provider';
export { renderPreview, transformInputs, PREVIEW_CAPTION, type PreviewFormat } from './picture';
export { deriveSeed, resolveSeed } from './seed';
