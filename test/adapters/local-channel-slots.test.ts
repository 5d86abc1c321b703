import { describe } from 'vitest';
import { localChannelSlots } from '../../src/adapters/local-channel-slots';
import { channelSlotsContract } from '../conformance/channel-slots.conformance';

// The one-node counterpart of the PostgreSQL channel slots (postgres-channel-slots.test.ts): the same contract. The
// channel pool's tests also use it as the count several in-process "nodes" share.
describe('local channel slots', () => {
  channelSlotsContract(async () => {
    const slots = localChannelSlots();
    return { node: async () => slots };
  });
});
