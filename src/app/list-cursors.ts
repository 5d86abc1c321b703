import { FieldError } from '../domain/errors';
import { createSecretBox } from './secret-box';

/**
 * The cursors of a client's lists (its tasks, its ledger): where the next page starts, sealed. The position is a
 * task's `seq` or a ledger row's id, both counted across every account: two of them apart would tell a client how
 * many rows the other accounts made meanwhile. Sealed (AES-256-GCM under a key of their own, derived from the relay
 * secret, with the list and the account bound to it), a cursor tells nothing, and one of another list or account,
 * or made up, is refused. The operator's lists keep plain numbers.
 */
export interface ListCursors {
  seal(position: number, list: string, accountId: string): string;
  /** The position, or a 400 naming `cursor` for one this relay did not give for this list and account. */
  open(cursor: string, list: string, accountId: string): number;
}

export function createListCursors(relaySecret: string): ListCursors {
  const box = createSecretBox(relaySecret, 'list-cursors/aes-256-gcm/v1');
  const context = (list: string, accountId: string) => `${list}:${accountId}`;
  return {
    seal: (position, list, accountId) => box.seal(String(position), context(list, accountId)),
    open(cursor, list, accountId) {
      let position: number;
      try {
        position = Number(box.open(cursor, context(list, accountId)));
      } catch {
        position = Number.NaN;
      }
      if (!Number.isSafeInteger(position) || position < 1) {
        throw new FieldError('InvalidParameterValue', 'cursor', 'not a next_cursor this relay gave for this list');
      }
      return position;
    },
  };
}
