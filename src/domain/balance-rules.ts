/**
 * Why an operator's adjustment of a balance is refused, if it is: a negative amount may take only what is available
 * (`balance - held`: credits held by unfinished tasks stay theirs), and no balance may pass Number.MAX_SAFE_INTEGER
 * (money must stay exact as a JS number). Both stores apply it to the row they locked.
 */
export function adjustmentRefusal(
  account: { readonly balance: number; readonly held: number },
  amount: number,
): { readonly reason: 'insufficient_balance'; readonly available: number } | { readonly reason: 'balance_limit'; readonly balance: number } | undefined {
  const available = account.balance - account.held;
  if (available + amount < 0) return { reason: 'insufficient_balance', available };
  if (account.balance + amount > Number.MAX_SAFE_INTEGER) return { reason: 'balance_limit', balance: account.balance };
  return undefined;
}
