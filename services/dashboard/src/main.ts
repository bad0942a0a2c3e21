import { mount } from 'svelte';
import App from './App.svelte';
import './app.css';
import { conn } from './lib/conn.svelte';
import { perf } from './lib/perf';

perf.start();
// For the browser tests and for the console: the page's NATS connection.
(window as any).__dash = { conn };
conn.start();
export default mount(App, { target: document.getElementById('app')! });
