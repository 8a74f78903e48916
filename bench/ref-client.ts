/**
 * The reference for the agent's start-up time and idle memory: the least a Node process with
 * mqtt.js can do. It connects, publishes one retained QoS 1 message and stays connected, idle,
 * until SIGTERM. Usage: node dist/bench/ref-client.js URL TOPIC [PROTOCOL_VERSION]
 */
import mqtt from 'mqtt';

const [url, topic, version = '5'] = process.argv.slice(2);
if (!url || !topic || (version !== '4' && version !== '5')) {
  process.stderr.write('usage: ref-client URL TOPIC [4|5]\n');
  process.exit(64);
}
const client = mqtt.connect(url, { protocolVersion: version === '4' ? 4 : 5, reconnectPeriod: 0 });
client.on('connect', () => {
  client.publish(topic, JSON.stringify({ state: 'online' }), { qos: 1, retain: true });
});
client.on('error', (err) => process.stderr.write(`ref-client: ${err.message}\n`));
process.once('SIGTERM', () => client.end(false, {}, () => process.exit(0)));
