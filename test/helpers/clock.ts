/** Real time plus an offset the test moves forward: the engine keeps working while expiry and window checks see the future. */
export function movableClock() {
  let offset = 0;
  return {
    now: () => Date.now() + offset,
    advance(ms: number) {
      offset += ms;
    },
  };
}
