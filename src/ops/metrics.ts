// Metrics of one server, kept in a prom-client registry of its own (never the global one,
// so two servers in one test process do not mix). Hot-path instruments are bound to their
// labels once per database; values the engine already counts (statement caches, pool
// state, WAL size) are read when a scrape asks for them, so they cost nothing per request.
import http from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

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

export type Route = 'read' | 'write' | 'tx' | 'direct';
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

  private readonly statements = new Counter({ name: 'sqlite_rpc_statements_total', help: 'Statements executed, by database, statement kind and the connection that ran it.', labelNames: ['db', 'kind', 'role'], registers: [this.registry] });
  private readonly statementSeconds = new Histogram({ name: 'sqlite_rpc_statement_duration_seconds', help: 'Time spent executing a statement in SQLite (queueing excluded).', labelNames: ['db', 'role'], buckets: LATENCY_BUCKETS, registers: [this.registry] });
  private readonly writerWaitSeconds = new Histogram({ name: 'sqlite_rpc_writer_wait_seconds', help: 'Time a write or transaction waited for the writer connection.', labelNames: ['db'], buckets: LATENCY_BUCKETS, registers: [this.registry] });
  private readonly groupUnits = new Histogram({ name: 'sqlite_rpc_group_commit_units', help: 'Writes and transactions made durable by one COMMIT (group commit batch size).', labelNames: ['db'], buckets: BATCH_BUCKETS, registers: [this.registry] });
  private readonly commitSeconds = new Histogram({ name: 'sqlite_rpc_commit_duration_seconds', help: 'Duration of a group COMMIT, fsync included.', labelNames: ['db'], buckets: LATENCY_BUCKETS, registers: [this.registry] });
  private readonly checkpoints = new Counter({ name: 'sqlite_rpc_wal_checkpoints_total', help: 'WAL checkpoints run by the server, by mode and outcome (busy = readers kept it from finishing).', labelNames: ['db', 'mode', 'outcome'], registers: [this.registry] });
  private readonly checkpointPages = new Gauge({ name: 'sqlite_rpc_wal_last_checkpoint_pages', help: 'Pages in the WAL and pages moved to the database by the last checkpoint.', labelNames: ['db', 'what'], registers: [this.registry] });
  private readonly errors = new Counter({ name: 'sqlite_rpc_errors_total', help: 'Failed statements, by SQLite extended result code or protocol error kind.', labelNames: ['db', 'code'], registers: [this.registry] });
  private readonly slowQueries = new Counter({ name: 'sqlite_rpc_slow_queries_total', help: 'Statements slower than the slow-query threshold.', labelNames: ['db'], registers: [this.registry] });
  private readonly backups = new Counter({ name: 'sqlite_rpc_backups_total', help: 'Online backups (on request or scheduled), by outcome.', labelNames: ['db', 'outcome'], registers: [this.registry] });
  readonly requests = new Counter({ name: 'sqlite_rpc_requests_total', help: 'JSON-RPC requests, by method and outcome.', labelNames: ['method', 'outcome'], registers: [this.registry] });

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

  /** A source of database snapshots (the registry of open engines). */
  addSource(f: () => DbSnapshot[]): void {
    this.sources.add(f);
  }

  forDatabase(db: string): DbMetrics {
    const statementSeconds = { writer: this.statementSeconds.labels(db, 'writer'), reader: this.statementSeconds.labels(db, 'reader'), worker: this.statementSeconds.labels(db, 'worker'), private: this.statementSeconds.labels(db, 'private') };
    const wait = this.writerWaitSeconds.labels(db);
    const units = this.groupUnits.labels(db);
    const commit = this.commitSeconds.labels(db);
    return {
      statement: (kind, role, seconds) => {
        this.statements.inc({ db, kind, role });
        statementSeconds[role].observe(seconds);
      },
      writerWait: (seconds) => wait.observe(seconds),
      groupCommit: (n, seconds) => {
        units.observe(n);
        commit.observe(seconds);
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
    for (const m of [this.statements, this.statementSeconds, this.writerWaitSeconds, this.groupUnits, this.commitSeconds, this.checkpoints, this.checkpointPages, this.errors, this.slowQueries, this.backups]) {
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
