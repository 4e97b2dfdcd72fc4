import type { Redis } from "ioredis";

/**
 * Number of connections blocked in `cmd` (`xread`, `xreadgroup`) according to CLIENT LIST
 * (flag `b`). Counts every client of the server, so it is only meaningful on a private one.
 */
export async function blockedIn(redis: Redis, cmd: string): Promise<number> {
  const list = (await redis.call("CLIENT", "LIST")) as string;
  const command = new RegExp(`\\bcmd=${cmd}\\b`);
  return list.split("\n").filter((line) => /\bflags=\S*b/.test(line) && command.test(line)).length;
}
