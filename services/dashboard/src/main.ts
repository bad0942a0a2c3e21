import { mount } from 'svelte';
import App from './App.svelte';
import './app.css';
import { conn } from './lib/conn.svelte';
import { perf } from './lib/perf';

perf.start();
conn.start();
export default mount(App, { target: document.getElementById('app')! });
