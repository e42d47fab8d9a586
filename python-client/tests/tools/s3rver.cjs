// s3rver (a fake S3 from npm, a devDependency) for the replication tests, with two fixes
// that make it behave as S3 does.
//   node s3rver.cjs DIR PORT BUCKET    (PORT 0: any free port; prints "listening on HOST:PORT")
const crypto = require('node:crypto');
const fs = require('node:fs');
const nodePath = require('node:path');
const { Readable, Transform } = require('node:stream');
const { pipeline } = require('node:stream/promises');
const S3rver = require('s3rver');
const FilesystemStore = require('s3rver/lib/stores/filesystem');

// A PUT is all or nothing on S3. s3rver 3.7.1 writes the body straight into the object's
// file, and says it is stored before that file is flushed: an upload cut off by kill -9
// left a truncated WAL segment in the bucket, and `litestream restore` failed on it with
// "unexpected EOF". Here the body goes to a temporary file, renamed once complete.
let tmpSeq = 0;
FilesystemStore.prototype.putObject = async function (object) {
  const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
  await fs.promises.mkdir(nodePath.dirname(objectPath), { recursive: true });
  const tmp = `${objectPath}.${process.pid}-${++tmpSeq}.tmp`;
  const md5 = crypto.createHash('md5');
  let size = 0;
  const body = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content;
  const count = new Transform({
    transform(chunk, _enc, cb) {
      md5.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  try {
    await pipeline(body, count, fs.createWriteStream(tmp));
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  const digest = md5.digest('hex');
  // The object is seen (getMetadata stats its file) only once both are in place.
  await this.putMetadata(object.bucket, object.key, object.metadata, digest);
  fs.renameSync(tmp, objectPath);
  return { size, md5: digest };
};

// s3rver 3.7.1 lists "folders" (ListObjects with a delimiter) wrongly when the objects sit
// two or more levels below one: it prunes those directories before it has seen an object
// in them, so they never become common prefixes. Litestream lists its generations exactly
// so (<path>/generations/ with "/"), and found none. Here such a listing is computed from
// the full recursive one.

const listObjects = FilesystemStore.prototype.listObjects;
FilesystemStore.prototype.listObjects = async function (bucket, options) {
  const { delimiter = '', prefix = '', maxKeys = Infinity } = options;
  if (!delimiter) return listObjects.call(this, bucket, options);
  const all = await listObjects.call(this, bucket, { ...options, delimiter: '', maxKeys: Infinity });
  const commonPrefixes = new Set();
  const objects = [];
  let isTruncated = false;
  for (const o of all.objects) {
    const idx = o.key.slice(prefix.length).indexOf(delimiter);
    if (idx !== -1) {
      commonPrefixes.add(o.key.slice(0, prefix.length + idx + 1));
      continue;
    }
    if (objects.length < maxKeys) objects.push(o);
    else {
      isTruncated = true;
      break;
    }
  }
  return { objects, commonPrefixes: [...commonPrefixes].sort(), isTruncated };
};

const [directory, port, bucket] = process.argv.slice(2);
new S3rver({ port: Number(port), address: '127.0.0.1', directory, silent: true, configureBuckets: [{ name: bucket }] })
  .run()
  .then((a) => console.log(`listening on ${a.address}:${a.port}`));
