// The real npm `graphql-ws` client (with the `ws` WebSocket implementation),
// driven by tests/graphql_ws.rs against examples/graphql_ws.rs. It prints one
// JSON object per line for every event the peer observes (`socket`,
// `socket_closed`, `connecting`, `connected`, `ack`, `me`, `tick`, `complete`,
// `error`, `deadline`, `crash`), and exits by itself.
//
//   node client.mjs '<json options>'
//
// options: { url, scenario: "subscribe" | "carrier" | "silent", token,
//            ticks (stop after this many, default: run until closed),
//            everyMs, retryAttempts, deadlineMs,
//            tokenFromStdin: print {"event":"ready"} once loaded, then read
//              the token from the first line of stdin (so that a short-lived
//              token's clock starts only after Node's own slow start) }
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const options = JSON.parse(process.argv[2] ?? "{}");
const deadline = setTimeout(() => {
  emit({ event: "deadline" });
  process.exit(2);
}, options.deadlineMs ?? 30000);

// Every event carries `ms`: milliseconds since the client started.
const started = performance.now();
function emit(object) {
  const ms = Math.round(performance.now() - started);
  process.stdout.write(JSON.stringify({ ...object, ms }) + "\n");
}

// Every WebSocket the client opens reports how it ended, so the test sees each
// (re)connection attempt, its close code and whether the closing handshake
// completed in both directions (`ws` sets `wasClean` only then).
function reporting(Base) {
  return class extends Base {
    constructor(url, protocols) {
      super(url, protocols);
      emit({ event: "socket", protocols: [].concat(protocols ?? []) });
      this.addEventListener("close", (e) =>
        emit({ event: "socket_closed", code: e.code, reason: e.reason, wasClean: e.wasClean }),
      );
    }
  };
}

// The subprotocol carrier: offer the credential entry beside graphql-ws's own
// protocol, as a browser page would with `new WebSocket(url, [...])`.
function withCredentialProtocol(token) {
  const entry = "base64url.bearer." + Buffer.from(token).toString("base64url");
  return class extends WebSocket {
    constructor(url, protocols) {
      super(url, [].concat(protocols ?? []).concat([entry]));
    }
  };
}

async function readToken() {
  emit({ event: "ready" });
  let input = "";
  for await (const chunk of process.stdin) {
    input += chunk;
    if (input.includes("\n")) break;
  }
  return input.split("\n")[0].trim();
}

async function run() {
  if (options.tokenFromStdin) {
    options.token = await readToken();
  }
  if (options.scenario === "silent") {
    // Opens the socket and never sends connection_init.
    const socket = new (reporting(WebSocket))(options.url, ["graphql-transport-ws"]);
    await new Promise((resolve) => socket.addEventListener("close", resolve));
    return;
  }

  const Impl =
    options.scenario === "carrier"
      ? reporting(withCredentialProtocol(options.token))
      : reporting(WebSocket);
  const client = createClient({
    url: options.url,
    webSocketImpl: Impl,
    lazy: true,
    // Keep the socket between the `me` query and the subscription (with the
    // default 0 the lazy client closes it as soon as `me` completes), so
    // each connection attempt is one socket.
    lazyCloseTimeout: 1000,
    retryAttempts: options.retryAttempts ?? 0,
    retryWait: () => new Promise((resolve) => setTimeout(resolve, 100)),
    connectionParams: options.scenario === "carrier" ? {} : { token: options.token },
    on: {
      connecting: () => emit({ event: "connecting" }),
      connected: () => emit({ event: "connected" }),
      // Every connection_ack the server sends (exactly one per socket).
      message: (message) => message.type === "connection_ack" && emit({ event: "ack" }),
    },
  });

  try {
    const me = await new Promise((resolve, reject) => {
      let result;
      client.subscribe(
        { query: "{ me { id } }" },
        { next: (value) => (result = value), error: reject, complete: () => resolve(result) },
      );
    });
    emit({ event: "me", data: me.data ?? null, errors: me.errors ?? null });

    await new Promise((resolve, reject) => {
      let seen = 0;
      const stop = client.subscribe(
        { query: `subscription { ticks(everyMs: ${options.everyMs ?? 100}) }` },
        {
          next: (value) => {
            emit({ event: "tick", value: value.data?.ticks ?? null });
            seen += 1;
            if (options.ticks && seen >= options.ticks) {
              stop();
              resolve();
            }
          },
          error: reject,
          complete: resolve,
        },
      );
    });
    emit({ event: "complete" });
  } catch (error) {
    // A CloseEvent (`code`, `reason`) or an Error.
    emit({
      event: "error",
      code: error?.code ?? null,
      reason: error?.reason ?? String(error?.message ?? error),
    });
  } finally {
    await client.dispose();
  }
}

run()
  .catch((error) => emit({ event: "crash", message: String(error?.stack ?? error) }))
  .finally(() => {
    // Let the last socket's close event print, then stop.
    setTimeout(() => {
      clearTimeout(deadline);
      process.exit(0);
    }, 300);
  });
