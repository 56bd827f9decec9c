// TimescaleDB test tier: PGlite (PostgreSQL 17.5 + TimescaleDB 2.23 compiled to WASM)
// served on the PostgreSQL wire protocol on 127.0.0.1.
//
//   node server.mjs [--port 15433] [--host 127.0.0.1] [--db memory://|<dir>]
//
// Environment fallbacks: ROADSENSE_PGLITE_PORT, ROADSENSE_PGLITE_HOST, ROADSENSE_PGLITE_DB.
// Started (detached) and stopped (SIGTERM) by pipeline/stack.py.
//
// Limits (ARCHITECTURE.md): one connection at a time (others queue) and ONE backend
// session shared by all clients (this script resets it between clients; a client must
// not RESET search_path / RESET ALL / DISCARD ALL itself: that leaves pg_catalog, so
// write SET search_path TO public instead), no COPY FROM STDIN,
// no background workers (run policy jobs with CALL run_job(id)), continuous-aggregate
// DDL needs autocommit. Clients must use sslmode=disable and send a password (any).
import { parseArgs } from "node:util";
import { PGlite } from "@electric-sql/pglite";
import { timescaledb } from "@electric-sql/pglite/timescaledb";
import { PGLiteSocketServer } from "@electric-sql/pglite-socket";

const { values } = parseArgs({
  options: {
    port: { type: "string", default: process.env.ROADSENSE_PGLITE_PORT ?? "15433" },
    host: { type: "string", default: process.env.ROADSENSE_PGLITE_HOST ?? "127.0.0.1" },
    db: { type: "string", default: process.env.ROADSENSE_PGLITE_DB ?? "memory://" },
    // How long a client waits for its turn (PGlite serves one connection at a time).
    "queue-timeout-ms": { type: "string", default: "10000" },
  },
});

const port = Number.parseInt(values.port, 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`pglite: invalid port ${JSON.stringify(values.port)}`);
  process.exit(2);
}

const t0 = Date.now();
const db = await PGlite.create(values.db, { extensions: { timescaledb } });
await db.exec("CREATE EXTENSION IF NOT EXISTS timescaledb");
const { rows } = await db.query(
  "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'",
);

const server = new PGLiteSocketServer({
  db,
  port,
  host: values.host,
  connectionQueueTimeout: Number.parseInt(values["queue-timeout-ms"], 10),
});
server.addEventListener("error", (e) => console.error("pglite: socket server error:", e.detail));
await server.start();
// pglite-socket 0.0.19 leaves a QUEUED socket without an 'error' listener: a client that
// gives up while waiting for its turn (connect timeout, killed test) resets the socket and
// the unhandled ECONNRESET killed the whole server. Give every socket a listener; the
// handler that later serves the socket adds its own.
//
// PGlite is ONE backend session shared by every client in turn: without a reset, a client
// inherits the previous one's open transaction, SET/search_path/role, temp tables and
// prepared statements (psycopg's automatic "_pg3_0" then fails with
// DuplicatePreparedStatement). When a client's socket closes, queue ROLLBACK, DISCARD ALL,
// SET search_path TO public
// on PGlite's exclusive lock; this listener is registered before the library's own, so the
// reset runs before the next queued client gets the session.
const encoder = new TextEncoder();
function simpleQuery(sql) {
  const body = encoder.encode(`${sql}\0`);
  const msg = new Uint8Array(5 + body.length);
  msg[0] = 0x51; // 'Q'
  new DataView(msg.buffer).setInt32(1, 4 + body.length);
  msg.set(body, 5);
  return msg;
}
function resetSession() {
  return db
    .runExclusive(async () => {
      await db.execProtocolRaw(simpleQuery("ROLLBACK"));
      await db.execProtocolRaw(simpleQuery("DISCARD ALL"));
      // PGlite boots its backend with search_path=pg_catalog and then sets `public` for
      // the session, so RESET/DISCARD ALL leave pg_catalog: restore what PGlite sets.
      await db.execProtocolRaw(simpleQuery("SET search_path TO public"));
    })
    .catch((err) => console.error("pglite: session reset failed:", err));
}
server.server?.on("connection", (sock) => {
  sock.on("error", (err) => console.error(`pglite: client socket error: ${err.code ?? err}`));
  sock.once("close", () => void resetSession());
});
process.on("uncaughtException", (err) => {
  if (err?.code === "ECONNRESET" || err?.code === "EPIPE") {
    console.error(`pglite: ignored client ${err.code}`);
    return;
  }
  console.error("pglite: fatal:", err);
  process.exit(1);
});
console.log(
  `pglite: ready on ${values.host}:${port} (db ${values.db}, timescaledb ${rows[0]?.extversion}, ` +
    `${Date.now() - t0} ms)`,
);

let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`pglite: ${signal}, stopping`);
  try {
    await server.stop();
    await db.close();
  } catch (err) {
    console.error("pglite: error while stopping:", err);
    process.exit(1);
  }
  process.exit(0);
}
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
