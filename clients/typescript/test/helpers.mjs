// What the tests share: clients for the local stack's demo keys, and a PNG.
import { deflateSync } from "node:zlib";
import { VideoJobsClient } from "../dist/index.js";

const baseUrl = process.env.VIDEOJOBS_URL;
export const stackUp = Boolean(baseUrl && process.env.VIDEOJOBS_KEY);

export function client(key = process.env.VIDEOJOBS_KEY) {
  return new VideoJobsClient({ baseUrl, apiKey: key });
}
export const reviewer = () => client(process.env.VIDEOJOBS_REVIEWER_KEY);
export const admin = () => client(process.env.VIDEOJOBS_ADMIN_KEY);

function crc32(bytes) {
  let c, crc = 0xffffffff;
  for (const b of bytes) {
    c = (crc ^ b) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "latin1");
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** A real RGB PNG with a gradient, `width` × `height`. */
export function png(width, height) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    for (let x = 0; x < width; x++) rows.set([(x * 255) / width, (y * 255) / height, 128], row + 1 + x * 3);
  }
  return new Uint8Array(Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header), chunk("IDAT", deflateSync(rows)), chunk("IEND", Buffer.alloc(0)),
  ]));
}
