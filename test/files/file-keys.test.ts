import { describe, expect, it } from 'vitest';
import { BUCKET_MS, bucketAt, bucketName, bucketOfTaskId, outputKey, relayFileId, uploadKey } from '../../src/app/file-keys';
import { newId, newTaskId } from '../../src/app/ids';

describe('the keys the relay makes for files, and recognising them again', () => {
  it("a bucket's name is the first 9 hex digits of a task id made in it, at either edge of its 4.096 s", () => {
    for (const at of [0, 1_700_000_000_000, 1_700_000_000_000 + BUCKET_MS - 1, 2 ** 47]) {
      const start = bucketAt(at) * BUCKET_MS;
      for (const t of [start, start + BUCKET_MS - 1]) expect(bucketOfTaskId(newTaskId(t)), `${t}`).toBe(bucketName(bucketAt(at)));
    }
    expect(bucketName(bucketAt(BUCKET_MS))).toBe('000000001');
  });

  it('recognises every key it makes and gives back the file id', () => {
    const fileId = newId('file');
    const taskId = newTaskId(Date.now());
    const output = outputKey(taskId, 3, fileId, 'webp');
    expect(output).toBe(`outputs/${bucketOfTaskId(taskId)}/${taskId}-3-${fileId}.webp`);
    expect(relayFileId(output)).toBe(fileId);
    const upload = uploadKey(Date.now(), fileId, 'jpg');
    expect(upload).toBe(`inputs/${bucketName(bucketAt(Date.now()))}/${fileId}.jpg`);
    expect(relayFileId(upload)).toBe(fileId);
  });

  it('recognises nothing else: those names the relay did not make, and must never delete', () => {
    const fileId = 'file_AAAAAAAAAAAAAAAA';
    const taskId = newTaskId(1_700_000_000_000);
    const bucket = bucketOfTaskId(taskId);
    for (const key of [
      `outputs/${bucket}/${taskId}-0-${fileId}.png.123-w4.tmp`, // a temporary is the storage's, not a key
      `outputs/${bucketName(bucketAt(1_700_000_000_000) + 1)}/${taskId}-0-${fileId}.png`, // another task's bucket
      `outputs/${bucket}/${taskId}-0-${fileId}.png.bak`,
      `outputs/${bucket}/${taskId}-01-${fileId}.png`,
      `outputs/${bucket}/${taskId}-0-${fileId}x.png`,
      `outputs/${bucket}/${taskId.replace('-7', '-4')}-0-${fileId}.png`, // a UUIDv4: not a task id the relay makes
      `outputs/${bucket}/notes.txt`,
      `outputs/${bucket}/sub/${taskId}-0-${fileId}.png`,
      `inputs/acct_x/${fileId}.png`, // an upload stored before time buckets: its row names it, the sweep never looks
      `inputs/${bucket}/${fileId}.gif`,
      `inputs/${bucket}/${fileId}.png.tmp`,
      `inputs/${bucket}/../${fileId}.png`,
      `elsewhere/${bucket}/${fileId}.png`,
    ]) {
      expect(relayFileId(key), key).toBeUndefined();
    }
  });
});
