// A worker thread starts without the main thread's TypeScript loader: register tsx here (as bin/aigc-relay.js does
// for the main thread), then load the writer itself.
import { register } from 'tsx/esm/api';

register();
await import('./writer-thread.ts');
