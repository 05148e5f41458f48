// A Node.js client of Reckon, built only from the .proto contracts: it creates a
// customer and a prepaid account in accounts, then reads the account's balance in
// charging (which learns the account from accounts' events, so it asks until then).
//
//   cd examples/node && npm ci
//   RECKON_ACCOUNTS_ADDR=127.0.0.1:50051 RECKON_CHARGING_ADDR=127.0.0.1:50053 \
//   RECKON_SERVICE_TOKEN=$(cat ../../data/service-token) node create_customer.js
//
// The .proto files come from protos/ and, for google/type and google/rpc, from
// third_party/googleapis (copied there by `make setup`). Prints one JSON line.
"use strict";

const path = require("node:path");
const crypto = require("node:crypto");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const ROOT = path.resolve(__dirname, "..", "..");
const INCLUDES = [path.join(ROOT, "protos"), path.join(ROOT, "third_party", "googleapis")];

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is required`);
    process.exit(2);
  }
  return value;
}

function load(file) {
  const definition = protoLoader.loadSync(file, {
    includeDirs: INCLUDES,
    keepCase: true, // field names as in the .proto (customer_id)
    longs: String, // int64 as decimal strings: no precision lost
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition);
}

// Promise wrapper for a unary call with the service token and a deadline.
function call(client, method, request, token) {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  const deadline = new Date(Date.now() + 10_000);
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const token = required("RECKON_SERVICE_TOKEN");
  const accountsPkg = load("reckon/accounts/v1/accounts.proto").reckon.accounts.v1;
  const chargingPkg = load("reckon/charging/v1/charging.proto").reckon.charging.v1;
  const credentials = grpc.credentials.createInsecure();
  const accounts = new accountsPkg.AccountsService(required("RECKON_ACCOUNTS_ADDR"), credentials);
  const charging = new chargingPkg.ChargingService(required("RECKON_CHARGING_ADDR"), credentials);

  const { customer } = await call(
    accounts,
    "CreateCustomer",
    {
      customer: { display_name: "Ada from Node.js", email: "ada@example.org" },
      request_id: crypto.randomUUID(),
    },
    token,
  );
  const { account } = await call(
    accounts,
    "CreateAccount",
    {
      account: {
        customer_id: customer.customer_id,
        display_name: "Prepaid",
        currency_code: "EUR",
        time_zone: "Europe/Amsterdam",
        bill_cycle_day: 1,
        tax_region: "NL",
        payment_mode: "PAYMENT_MODE_PREPAID",
      },
      request_id: crypto.randomUUID(),
    },
    token,
  );

  let balance;
  for (let attempt = 0; ; attempt++) {
    try {
      balance = await call(charging, "GetBalance", { account_id: account.account_id }, token);
      break;
    } catch (error) {
      // NOT_FOUND until charging has read the AccountCreated event.
      if (error.code !== grpc.status.NOT_FOUND || attempt >= 150) throw error;
      await sleep(200);
    }
  }
  console.log(
    JSON.stringify({
      customer_id: customer.customer_id,
      account_id: account.account_id,
      state: balance.state,
      billing_mode: balance.billing_mode,
      buckets: balance.buckets.map((b) => ({
        bucket_id: b.bucket.bucket_id,
        available: b.available,
      })),
    }),
  );
  accounts.close();
  charging.close();
}

main().catch((error) => {
  console.error(`failed: ${error.code !== undefined ? `code ${error.code}: ` : ""}${error.message}`);
  process.exit(1);
});
