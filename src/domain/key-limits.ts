/**
 * The largest per-key limits an operator may set (the admin API's schema and the CLI both check them): past these a
 * limit means "unlimited" in practice, and a larger number is more likely a typo than a wish.
 */
export const MAX_KEY_RPM = 1_000_000;
export const MAX_KEY_CONCURRENCY = 100_000;
