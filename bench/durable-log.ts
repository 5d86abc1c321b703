/**
 * The durable bare server's one rule (bench/bare-server.ts --durable): a POST is answered only after its body was
 * written and an fdatasync that *started after that write finished* has returned. One fdatasync runs at a time;
 * every body written while it runs waits for the next one, which covers them all (group commit, as the relay's
 * SQLite commits are). The file system calls are passed in, so the rule is tested without a disk.
 */
export interface LogFs {
  write(data: Buffer, done: (error: Error | null) => void): void;
  fdatasync(done: (error: Error | null) => void): void;
}

export function durableLog(fs: LogFs): (data: Buffer, answer: () => void) => void {
  let waiting: Array<() => void> = [];
  let syncing = false;
  const syncWaiting = (): void => {
    if (syncing || waiting.length === 0) return;
    syncing = true;
    const batch = waiting;
    waiting = [];
    fs.fdatasync((error) => {
      if (error) throw error;
      syncing = false;
      for (const answer of batch) answer();
      syncWaiting();
    });
  };
  return (data, answer) =>
    fs.write(data, (error) => {
      if (error) throw error;
      waiting.push(answer);
      syncWaiting();
    });
}
