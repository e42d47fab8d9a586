// s3rver (a fake S3 from npm, a devDependency) for the replication tests, with one fix.
// s3rver 3.7.1 lists "folders" (ListObjects with a delimiter) wrongly when the objects sit
// two or more levels below one: it prunes those directories before it has seen an object
// in them, so they never become common prefixes. Litestream lists its generations exactly
// so (<path>/generations/ with "/"), and found none. Here such a listing is computed from
// the full recursive one.
//   node s3rver.cjs DIR PORT BUCKET    (PORT 0: any free port; prints "listening on HOST:PORT")
const S3rver = require('s3rver');
const FilesystemStore = require('s3rver/lib/stores/filesystem');

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
