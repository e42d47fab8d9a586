// Metrics of one server, kept in a prom-client registry of its own (never the global one,
// so two servers in one test process do not mix). prom-client renders them; the
// instruments updated on every request are our own (FastCounter, FastHistogram): prom-client's
// label hashing and validation cost ~6 us per statement on the server (a cpu profile),
// about 6% of a point query's round trip. Values the engine already counts (statement
// caches, pool state, WAL size) are read when a scrape asks for them.
import http from 'node:http';
import { Counter, Gauge, Registry, type Metric } from 'prom-client';
import type { ReplicaStats } from './replication';

type Labels = Record<string, string>;
interface CounterSeries {
  labels: Labels;
  value: number;
}
interface HistogramSeries {
  labels: Labels;
  /** Per-bucket (not cumulative) counts; the last slot is +Inf. */
  counts: Float64Array;
  sum: number;
  count: number;
}

/** A counter whose series are plain objects: inc is a field update. Rendered by prom-client. */
class FastCounter {
  readonly type = 'counter';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, CounterSeries>();
  constructor(readonly name: string, readonly help: string) {}

  /** The series for these labels (kept: hold on to it and add to .value). */
  series_(labels: Labels): CounterSeries {
    const key = JSON.stringify(labels);
    let s = this.series.get(key);
    if (s === undefined) this.series.set(key, (s = { labels, value: 0 }));
    return s;
  }

  forget(db: string): void {
    for (const [k, s] of this.series) if (s.labels.db === db) this.series.delete(k);
  }

  get(): unknown {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: [...this.series.values()].map((s) => ({ labels: s.labels, value: s.value })) };
  }

  reset(): void {
    this.series.clear();
  }
}

class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, HistogramSeries>();
  constructor(readonly name: string, readonly help: string, readonly buckets: number[]) {}

  series_(labels: Labels): HistogramSeries {
    const key = JSON.stringify(labels);
    let s = this.series.get(key);
    if (s === undefined) this.series.set(key, (s = { labels, counts: new Float64Array(this.buckets.length + 1), sum: 0, count: 0 }));
    return s;
  }

  observe(s: HistogramSeries, v: number): void {
    const b = this.buckets;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    s.counts[i]++;
    s.sum += v;
    s.count++;
  }

  forget(db: string): void {
    for (const [k, s] of this.series) if (s.labels.db === db) this.series.delete(k);
  }

  get(): unknown {
    const values: Array<{ labels: Labels | Record<string, string | number>; value: number; metricName: string }> = [];
    for (const s of this.series.values()) {
      let acc = 0;
      this.buckets.forEach((le, i) => {
        acc += s.counts[i];
        values.push({ labels: { ...s.labels, le }, value: acc, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { ...s.labels, le: '+Inf' }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels: s.labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: s.labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.series.clear();
  }
}

/** What a database reports when metrics are collected (DatabaseEngine.metricsSnapshot). */
export interface DbSnapshot {
  path: string;
  sessions: number;
  transactions: number;
  readers: number;
  readersBusy: number;
  readerRespawns: number;
  writerQueue: number;
  writerWaiters: number;
  busyRetries: number;
  walBytes: number;
  cache: Record<'writer' | 'reader', { hits: number; misses: number; evictions: number }>;
}

export type Role = 'writer' | 'reader' | 'worker' | 'private';

/** Instruments bound to one database's label, handed to its engine. */
export interface DbMetrics {
  statement(kind: string, role: Role, seconds: number): void;
  writerWait(seconds: number): void;
  groupCommit(units: number, seconds: number): void;
  checkpoint(mode: string, busy: boolean, logPages: number, checkpointedPages: number): void;
  error(code: string): void;
  slowQuery(): void;
  backup(ok: boolean): void;
}

export const FORMATS = ['json', 'prometheus'] as const;
export type MetricsFormat = (typeof FORMATS)[number];

const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000];

export class Metrics {
  readonly registry = new Registry();
  private readonly sources = new Set<() => DbSnapshot[]>();

  private readonly statements = this.fast(new FastCounter('sqlite_rpc_statements_total', 'Statements executed, by database, statement kind and the connection that ran it.'));
  private readonly statementSeconds = this.fast(new FastHistogram('sqlite_rpc_statement_duration_seconds', 'Time spent executing a statement in SQLite (queueing excluded).', LATENCY_BUCKETS));
  private readonly writerWaitSeconds = this.fast(new FastHistogram('sqlite_rpc_writer_wait_seconds', 'Time a write or transaction waited for the writer connection.', LATENCY_BUCKETS));
  private readonly groupUnits = this.fast(new FastHistogram('sqlite_rpc_group_commit_units', 'Writes and transactions made durable by one COMMIT (group commit batch size).', BATCH_BUCKETS));
  private readonly commitSeconds = this.fast(new FastHistogram('sqlite_rpc_commit_duration_seconds', 'Duration of a group COMMIT, fsync included.', LATENCY_BUCKETS));
  private readonly requestCounter = this.fast(new FastCounter('sqlite_rpc_requests_total', 'JSON-RPC requests, by method and outcome.'));
  private readonly requestSeries = new Map<string, CounterSeries>();
  private readonly checkpoints = new Counter({ name: 'sqlite_rpc_wal_checkpoints_total', help: 'WAL checkpoints run by the server, by mode and outcome (busy = readers kept it from finishing).', labelNames: ['db', 'mode', 'outcome'], registers: [this.registry] });
  private readonly checkpointPages = new Gauge({ name: 'sqlite_rpc_wal_last_checkpoint_pages', help: 'Pages in the WAL and pages moved to the database by the last checkpoint.', labelNames: ['db', 'what'], registers: [this.registry] });
  private readonly errors = new Counter({ name: 'sqlite_rpc_errors_total', help: 'Failed statements, by SQLite extended result code or protocol error kind.', labelNames: ['db', 'code'], registers: [this.registry] });
  private readonly slowQueries = new Counter({ name: 'sqlite_rpc_slow_queries_total', help: 'Statements slower than the slow-query threshold.', labelNames: ['db'], registers: [this.registry] });
  private readonly backups = new Counter({ name: 'sqlite_rpc_backups_total', help: 'Online backups (on request or scheduled), by outcome.', labelNames: ['db', 'outcome'], registers: [this.registry] });

  private fast<T extends FastCounter | FastHistogram>(m: T): T {
    this.registry.registerMetric(m as unknown as Metric);
    return m;
  }

  /** Count one handled request (called for every request: a Map lookup and an add). */
  request(method: string, ok: boolean): void {
    const key = ok ? method : `${method}\u0000error`;
    let s = this.requestSeries.get(key);
    if (s === undefined) {
      if (this.requestSeries.size > 256) return; // method names come from clients: bounded
      this.requestSeries.set(key, (s = this.requestCounter.series_({ method, outcome: ok ? 'ok' : 'error' })));
    }
    s.value++;
  }

  constructor() {
    const snapshots = () => [...this.sources].flatMap((f) => f());
    // Gauges and counters the engine keeps itself: filled in at scrape time.
    const gauge = (name: string, help: string, pick: (d: DbSnapshot) => number, extra: string[] = []) =>
      new Gauge({
        name,
        help,
        labelNames: ['db', ...extra],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const d of snapshots()) this.set({ db: d.path }, pick(d));
        },
      });
    const counter = (name: string, help: string, pick: (d: DbSnapshot) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['db'],
        registers: [this.registry],
        collect() {
          this.reset();
          for (const d of snapshots()) this.inc({ db: d.path }, pick(d));
        },
      });
    gauge('sqlite_rpc_sessions', 'Open sessions.', (d) => d.sessions);
    gauge('sqlite_rpc_transactions_open', 'Sessions inside a transaction that holds the writer.', (d) => d.transactions);
    gauge('sqlite_rpc_readers', 'Reader worker threads.', (d) => d.readers);
    gauge('sqlite_rpc_readers_busy', 'Reader workers with a request in flight.', (d) => d.readersBusy);
    gauge('sqlite_rpc_writer_queue_depth', 'Autocommit writes queued for the writer.', (d) => d.writerQueue);
    gauge('sqlite_rpc_writer_waiters', 'Sessions waiting to begin a transaction.', (d) => d.writerWaiters);
    gauge('sqlite_rpc_wal_bytes', 'Size of the -wal file.', (d) => d.walBytes);
    counter('sqlite_rpc_reader_respawns_total', 'Reader workers replaced after dying.', (d) => d.readerRespawns);
    counter('sqlite_rpc_busy_retries_total', 'Times the writer found another process holding the write lock and retried.', (d) => d.busyRetries);
    new Counter({
      name: 'sqlite_rpc_statement_cache_total',
      help: 'Prepared-statement cache events (hit, miss, eviction) of the writer and main-thread reader connections.',
      labelNames: ['db', 'connection', 'event'],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const d of snapshots()) {
          for (const conn of ['writer', 'reader'] as const) {
            const c = d.cache[conn];
            this.inc({ db: d.path, connection: conn, event: 'hit' }, c.hits);
            this.inc({ db: d.path, connection: conn, event: 'miss' }, c.misses);
            this.inc({ db: d.path, connection: conn, event: 'eviction' }, c.evictions);
          }
        }
      },
    });
  }

  private readonly replicaSources = new Set<() => Array<ReplicaStats & { path: string }>>();

  /** Litestream replicas (ops/replication.ts), read at scrape time. */
  addReplicaSource(f: () => Array<ReplicaStats & { path: string }>): void {
    this.replicaSources.add(f);
    const all = () => [...this.replicaSources].flatMap((g) => g());
    const gauge = (name: string, help: string, pick: (r: ReplicaStats) => number | null, type: 'gauge' | 'counter' = 'gauge') => {
      if (this.registry.getSingleMetric(name)) return;
      const Kind = type === 'gauge' ? Gauge : Counter;
      new Kind({
        name,
        help,
        labelNames: ['db'],
        registers: [this.registry],
        collect(this: Gauge | Counter) {
          this.reset();
          for (const r of all()) {
            const v = pick(r);
            if (v === null) continue;
            if (this instanceof Gauge) this.set({ db: r.path }, v);
            else this.inc({ db: r.path }, v);
          }
        },
      });
    };
    gauge('sqlite_rpc_replication_lag_seconds', 'Age of the oldest change not yet in the Litestream replica (0 = caught up).', (r) => (r.lag_ms === null ? null : r.lag_ms / 1000));
    gauge('sqlite_rpc_replication_last_sync_timestamp_seconds', 'When the replica last held every change (Unix time).', (r) => (r.last_sync_at === null ? null : Date.parse(r.last_sync_at) / 1000));
    gauge('sqlite_rpc_replication_running', '1 while the Litestream child runs.', (r) => (r.running ? 1 : 0));
    gauge('sqlite_rpc_replication_errors_total', 'Litestream errors (its error lines and exits).', (r) => r.errors, 'counter');
    gauge('sqlite_rpc_replication_restarts_total', 'Times the server restarted Litestream after it died.', (r) => r.restarts, 'counter');
    gauge('sqlite_rpc_replication_new_generations_total', 'New generations Litestream started (each a full snapshot; a break in point-in-time restore).', (r) => r.new_generations, 'counter');
    gauge('sqlite_rpc_replication_wal_paced_total', 'COMMITs after which the writer paused because Litestream had not checkpointed a WAL past twice its RESTART threshold.', (r) => r.wal_paced, 'counter');
  }

  /** A source of database snapshots (the registry of open engines). */
  addSource(f: () => DbSnapshot[]): void {
    this.sources.add(f);
  }

  forDatabase(db: string): DbMetrics {
    const h = this.statementSeconds;
    const seconds = { writer: h.series_({ db, role: 'writer' }), reader: h.series_({ db, role: 'reader' }), worker: h.series_({ db, role: 'worker' }), private: h.series_({ db, role: 'private' }) };
    const counts = new Map<string, CounterSeries>();
    const wait = this.writerWaitSeconds.series_({ db });
    const units = this.groupUnits.series_({ db });
    const commit = this.commitSeconds.series_({ db });
    return {
      statement: (kind, role, secs) => {
        const key = kind + role;
        let c = counts.get(key);
        if (c === undefined) counts.set(key, (c = this.statements.series_({ db, kind, role })));
        c.value++;
        h.observe(seconds[role], secs);
      },
      writerWait: (secs) => this.writerWaitSeconds.observe(wait, secs),
      groupCommit: (n, secs) => {
        this.groupUnits.observe(units, n);
        this.commitSeconds.observe(commit, secs);
      },
      checkpoint: (mode, busy, logPages, done) => {
        this.checkpoints.inc({ db, mode, outcome: busy ? 'busy' : 'ok' });
        this.checkpointPages.set({ db, what: 'log' }, logPages);
        this.checkpointPages.set({ db, what: 'checkpointed' }, done);
      },
      error: (code) => this.errors.inc({ db, code }),
      slowQuery: () => this.slowQueries.inc({ db }),
      backup: (ok) => this.backups.inc({ db, outcome: ok ? 'ok' : 'error' }),
    };
  }

  /** Drop a closed database's series, so a long-lived server does not accumulate them. */
  forgetDatabase(db: string): void {
    for (const m of [this.statements, this.statementSeconds, this.writerWaitSeconds, this.groupUnits, this.commitSeconds]) m.forget(db);
    for (const m of [this.checkpoints, this.checkpointPages, this.errors, this.slowQueries, this.backups]) {
      // remove() needs every label value; walk what exists for this database.
      const values = (m as unknown as { hashMap: Record<string, { labels: Record<string, string> }> }).hashMap;
      for (const entry of Object.values(values ?? {})) if (entry.labels?.db === db) (m as Counter<string>).remove(entry.labels);
    }
  }

  async render(format: MetricsFormat): Promise<{ format: MetricsFormat; content_type: string; text?: string; metrics?: unknown }> {
    if (format === 'prometheus') return { format, content_type: this.registry.contentType, text: await this.registry.metrics() };
    return { format, content_type: 'application/json', metrics: await this.registry.getMetricsAsJSON() };
  }
}

/**
 * `--metrics-port`: Prometheus text on http://127.0.0.1:PORT/metrics. Loopback only: the
 * metrics name database paths, which are nobody else's business.
 */
export function serveMetrics(metrics: Metrics, port: number, onError: (e: Error) => void): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || (url !== '/metrics' && url !== '/')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
      return;
    }
    metrics.render('prometheus').then(
      (r) => res.writeHead(200, { 'content-type': r.content_type }).end(r.text),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      server.on('error', onError);
      server.unref(); // never keeps the process alive on its own
      resolve(server);
    });
  });
}
