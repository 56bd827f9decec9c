// TimescaleDB test tier: PGlite (PostgreSQL 17.5 + TimescaleDB 2.23 compiled to WASM)
// served on the PostgreSQL wire protocol on 127.0.0.1.
//
//   node server.mjs [--port 15433] [--host 127.0.0.1] [--db memory://|<dir>]
//
// Environment fallbacks: ROADSENSE_PGLITE_PORT, ROADSENSE_PGLITE_HOST, ROADSENSE_PGLITE_DB.
// Started (detached) and stopped (SIGTERM) by pipeline/stack.py.
//
// Limits (ARCHITECTURE.md): one connection at a time (others queue), no COPY FROM STDIN,
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

const server = new PGLiteSocketServer({ db, port, host: values.host });
server.addEventListener("error", (e) => console.error("pglite: socket server error:", e.detail));
await server.start();
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
