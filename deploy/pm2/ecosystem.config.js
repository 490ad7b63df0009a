// PM2 runs the same services as `calmops up`, one process each, through `calmops service NAME`
// (same command, environment and settings as the local stack; logs in $CALMOPS_HOME/logs/NAME.log).
//   pm2 start deploy/pm2/ecosystem.config.js      pm2 status      pm2 stop all
// Back ends come from calmops.toml in the project folder or from CALMOPS_* variables
// (docs/production.md, "Settings").
const path = require("path");

const root = process.env.CALMOPS_ROOT || path.resolve(__dirname, "..", "..");
const calmops = process.env.CALMOPS_BIN || path.join(root, ".venv", "bin", "calmops");
// start order; services that need the Prefect API wait for it (`calmops service` retries for 120 s)
const services = ["prefect", "mlflow", "runner", "worker", "watcher", "viewer", "api"];

module.exports = {
  apps: services.map((name) => ({
    name: `calmops-${name}`,
    script: calmops,
    args: ["service", name],
    interpreter: "none",
    cwd: root,
    autorestart: true,
    restart_delay: 2000,
    max_restarts: 50,
    min_uptime: "10s",
    kill_timeout: 15000, // the worker finishes its flow run's current step on SIGINT
    // the data root as calmops.toml (or CALMOPS_HOME, when set) says: the same the shell's commands use
    env: process.env.CALMOPS_HOME ? { CALMOPS_HOME: process.env.CALMOPS_HOME } : {},
  })),
};
