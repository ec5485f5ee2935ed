"""The HTML report's behaviour: inline JavaScript, no library, no network.

It reads the plan's tensors, buffers and operators from the report's
``<script type="application/json" id="plan-data">`` block (written by ``html``) and:

- zooms (wheel, +/- buttons) and pans (drag) every chart on one shared step window,
  redrawing the step axis; a double click resets it;
- selects a tensor (click its rectangle, or search its name): its buffers stand out,
  its producer's and readers' steps are marked on every chart and in the operator
  table, and the side panel gives its details with links to those operators;
- selects an operator (click its row, a link, or search its name): its inputs and
  outputs stand out, its step is marked, and a button scrolls to them on the charts;
- shows the free space of every region at a step (click an empty part of a chart, or
  type the step): the gaps between live buffers, largest first, and a bar of the
  address range;
- shows a hover panel with the hovered rectangle's ``<title>``;
- opens at ``#tensor=NAME``, ``#op=NAME`` or ``#step=N`` when the address says so.

Model text only ever reaches the page through ``textContent`` (never as markup).
"""

SCRIPT = r"""
(function(){
'use strict';
var D=JSON.parse(document.getElementById('plan-data').textContent);
var L=D.layout, NS=document.querySelector('svg').namespaceURI;
var panel=document.getElementById('details'), info=document.getElementById('info');
var rects=Array.prototype.slice.call(document.querySelectorAll('rect[data-b]'));
var rectsOf={}, buffersOf={}, tensorIndex={}, opIndex={};
rects.forEach(function(r){
  var t=D.buffers[+r.getAttribute('data-b')][0];
  (rectsOf[t]=rectsOf[t]||[]).push(r);
});
D.buffers.forEach(function(b,i){(buffersOf[b[0]]=buffersOf[b[0]]||[]).push(i);});
D.tensors.forEach(function(t,i){tensorIndex[t[0]]=i;});
D.ops.forEach(function(o,i){opIndex[o[0]]=i;});
var plots=Array.prototype.slice.call(document.querySelectorAll('svg.plot'));
var win={x0:0,span:Math.max(D.steps,1)};

function bytes(n){
  var units=[['GiB',1073741824],['MiB',1048576],['KiB',1024]];
  for(var i=0;i<units.length;i++){if(n>=units[i][1])return (n/units[i][1]).toFixed(1)+units[i][0];}
  return n+'B';
}
function el(tag,attrs,parent){
  var e=document.createElementNS(NS,tag);
  for(var k in attrs){e.setAttribute(k,attrs[k]);}
  if(parent){parent.appendChild(e);}
  return e;
}
function h(tag,text,parent,cls){
  var e=document.createElement(tag);
  if(text!==null&&text!==undefined){e.textContent=text;}
  if(cls){e.className=cls;}
  if(parent){parent.appendChild(e);}
  return e;
}
function roundStep(raw){
  var p=Math.pow(10,Math.floor(Math.log10(Math.max(raw,1e-9))));
  var f=[1,2,5,10].find(function(f){return f*p>=raw;});
  return Math.max(1,f*p);
}

// -- zoom and pan ---------------------------------------------------------------
function apply(){
  plots.forEach(function(p){p.setAttribute('viewBox',win.x0+' 0 '+win.span+' '+p.getAttribute('data-h'));});
  document.querySelectorAll('g.xaxis').forEach(function(g){
    while(g.firstChild){g.removeChild(g.firstChild);}
    var step=roundStep(win.span/8), y=+g.getAttribute('data-y');
    for(var v=Math.ceil(win.x0/step)*step;v<=win.x0+win.span;v+=step){
      var x=L.left+(v-win.x0)/win.span*L.width;
      el('text',{x:x.toFixed(1),y:y,'text-anchor':'middle'},g).textContent=String(v);
    }
  });
  document.getElementById('window').textContent=
    'steps '+Math.round(win.x0)+' to '+Math.round(win.x0+win.span)+' of '+D.steps;
}
function zoom(factor,at){
  var f=(at-win.x0)/win.span;
  var span=Math.min(Math.max(win.span*factor,4),Math.max(D.steps,1));
  win.x0=Math.min(Math.max(at-f*span,0),Math.max(D.steps-span,0));
  win.span=span;
  apply();
}
function stepAt(plot,clientX){
  var r=plot.getBoundingClientRect();
  return win.x0+(clientX-r.left)/r.width*win.span;
}
var drag=null;
plots.forEach(function(plot){
  plot.addEventListener('wheel',function(e){
    e.preventDefault();
    zoom(e.deltaY>0?1.25:0.8,stepAt(plot,e.clientX));
  },{passive:false});
  plot.addEventListener('mousedown',function(e){
    drag={x:e.clientX,x0:win.x0,width:plot.getBoundingClientRect().width,moved:false};
  });
  plot.addEventListener('dblclick',function(){win={x0:0,span:Math.max(D.steps,1)};apply();});
  plot.addEventListener('click',function(e){
    if(drag&&drag.moved){drag=null;return;}
    drag=null;
    var b=e.target.getAttribute&&e.target.getAttribute('data-b');
    if(b!==null&&b!==undefined){selectTensor(D.buffers[+b][0]);}
    else{showStep(Math.floor(stepAt(plot,e.clientX)));}
  });
});
window.addEventListener('mousemove',function(e){
  if(!drag||drag.done){return;}
  var dx=e.clientX-drag.x;
  if(Math.abs(dx)>3){drag.moved=true;}
  if(drag.moved){
    win.x0=Math.min(Math.max(drag.x0-dx/drag.width*win.span,0),Math.max(D.steps-win.span,0));
    apply();
  }
});
window.addEventListener('mouseup',function(){if(drag){drag.done=true;}});
document.getElementById('zoom-in').addEventListener('click',function(){zoom(0.5,win.x0+win.span/2);});
document.getElementById('zoom-out').addEventListener('click',function(){zoom(2,win.x0+win.span/2);});
document.getElementById('zoom-reset').addEventListener('click',function(){win={x0:0,span:Math.max(D.steps,1)};apply();});

// -- selection -------------------------------------------------------------------
function clear(){
  document.querySelectorAll('.sel').forEach(function(e){e.classList.remove('sel');});
  document.querySelectorAll('tr.prod,tr.read,tr.cur').forEach(function(e){e.classList.remove('prod','read','cur');});
  document.querySelectorAll('g.marks').forEach(function(g){while(g.firstChild){g.removeChild(g.firstChild);}});
  while(panel.firstChild){panel.removeChild(panel.firstChild);}
  panel.style.display='block';
}
function mark(step,cls){
  document.querySelectorAll('g.marks').forEach(function(g){
    el('rect',{x:step,y:0,width:1,height:g.getAttribute('data-h'),'class':cls},g);
  });
  var row=document.getElementById('op-'+step);
  if(row){row.classList.add(cls==='mprod'?'prod':cls==='mread'?'read':'cur');}
}
function opLink(step,parent){
  var o=D.ops[step], a=h('a',o[0]+' ('+o[1]+') @'+step,parent);
  a.href='#op-'+step;
  a.addEventListener('click',function(){selectOp(step);});
  if(o[3]){h('span',' '+o[3],parent,'src');}
  return a;
}
function tensorLink(t,parent){
  var a=h('a',D.tensors[t][0],parent);
  a.href='#';
  a.addEventListener('click',function(e){e.preventDefault();selectTensor(t);});
  return a;
}
function selectTensor(t){
  clear();
  document.body.classList.add('focus');
  (rectsOf[t]||[]).forEach(function(r){r.classList.add('sel');});
  var T=D.tensors[t];
  document.body.setAttribute('data-selected',T[0]);
  h('h3','tensor '+T[0],panel);
  h('p','kind '+T[3],panel);
  var list=h('ul',null,panel);
  (buffersOf[t]||[]).forEach(function(i){
    var b=D.buffers[i];
    h('li',D.regions[b[1]].key+' at 0x'+b[2].toString(16)+', '+bytes(b[3])+' ('+b[3]+' B), steps ['+b[4]+', '+b[5]+']'+(b[6]?', alias of '+b[6]:''),list);
  });
  var made=h('p','producer: ',panel,'producer');
  if(T[1]>=0){opLink(T[1],made);mark(T[1],'mprod');}else{made.appendChild(document.createTextNode('none ('+T[3]+')'));}
  h('p','readers ('+T[2].length+'):',panel);
  var readers=h('ul',null,panel,'readers');
  T[2].forEach(function(s){opLink(s,h('li',null,readers));mark(s,'mread');});
}
function selectOp(step){
  clear();
  document.body.classList.add('focus');
  var o=D.ops[step];
  document.body.setAttribute('data-selected',o[0]);
  mark(step,'mcur');
  h('h3','operator '+o[0],panel);
  h('p',o[1]+', step '+step+', device '+o[2]+(o[6]!==null?', '+o[6].toFixed(2)+' \u00b5s':''),panel);
  if(o[3]){h('p','source: '+o[3],panel,'src');}
  [['inputs',o[4]],['outputs',o[5]]].forEach(function(pair){
    h('p',pair[0]+':',panel);
    var list=h('ul',null,panel);
    pair[1].forEach(function(t){
      (rectsOf[t]||[]).forEach(function(r){r.classList.add('sel');});
      var li=h('li',null,list);
      tensorLink(t,li);
      li.appendChild(document.createTextNode(' '+bytes(D.buffers[buffersOf[t][0]][3])));
    });
  });
  var charts=h('button','show on the charts',panel);
  charts.addEventListener('click',function(){
    var chart=(document.querySelector('rect.sel')||document.querySelector('svg.plot')).closest('svg.timeline');
    if(chart){chart.scrollIntoView({block:'center'});}
  });
  var free=h('button','free space at step '+step,panel);
  free.addEventListener('click',function(){showStep(step);});
}
function showStep(step){
  if(!(step>=0&&step<D.steps)){return;}
  clear();
  document.body.classList.remove('focus');
  mark(step,'mcur');
  var o=D.ops[step];
  h('h3','free space at step '+step,panel);
  opLink(step,h('p','running: ',panel));
  D.regions.forEach(function(region,ri){
    var live=[];
    D.buffers.forEach(function(b){if(b[1]===ri&&b[4]<=step&&step<=b[5]){live.push([b[2],b[2]+b[3]]);}});
    live.sort(function(a,b){return a[0]-b[0];});
    var gaps=[], at=region.low, used=0;
    live.forEach(function(s){
      if(s[0]>at){gaps.push([at,s[0]-at]);}
      if(s[1]>at){used+=s[1]-Math.max(at,s[0]);at=s[1];}
    });
    if(region.peak>at){gaps.push([at,region.peak-at]);}
    gaps.sort(function(a,b){return b[1]-a[1]||a[0]-b[0];});
    var free=gaps.reduce(function(n,g){return n+g[1];},0);
    h('h4',region.key,panel);
    h('p',bytes(used)+' live in '+live.length+' buffers; '+bytes(free)+' free in '+gaps.length+
      ' gaps'+(gaps.length?', largest '+bytes(gaps[0][1]):'')+' (between 0x'+region.low.toString(16)+' and the peak 0x'+region.peak.toString(16)+')',panel);
    var bar=el('svg',{width:300,height:14,'class':'freebar'},panel), span=Math.max(region.peak-region.low,1);
    el('rect',{x:0,y:0,width:300,height:14,fill:'#e8f5e9'},bar);
    live.forEach(function(s){
      el('rect',{x:((s[0]-region.low)/span*300).toFixed(2),y:0,width:Math.max((s[1]-s[0])/span*300,0.5).toFixed(2),height:14,fill:'#888'},bar);
    });
    if(gaps.length){
      var table=h('table',null,panel,'gaps'), head=h('tr',null,table);
      h('th','gap at',head);h('th','bytes',head);
      gaps.slice(0,8).forEach(function(g){var tr=h('tr',null,table);h('td','0x'+g[0].toString(16),tr);h('td',bytes(g[1]),tr);});
    }
  });
  document.body.setAttribute('data-selected','step '+step);
}

// -- search, table rows, hover, address --------------------------------------------
function find(query){
  var q=query.trim();
  if(q in tensorIndex){selectTensor(tensorIndex[q]);return;}
  if(q in opIndex){selectOp(opIndex[q]);return;}
  if(/^\d+$/.test(q)){showStep(+q);return;}
  var low=q.toLowerCase();
  var t=D.tensors.findIndex(function(t){return t[0].toLowerCase().indexOf(low)>=0;});
  if(t>=0){selectTensor(t);return;}
  var o=D.ops.findIndex(function(o){return o[0].toLowerCase().indexOf(low)>=0||(o[3]||'').toLowerCase().indexOf(low)>=0;});
  if(o>=0){selectOp(o);return;}
  clear();
  h('p','no tensor, operator or step matches '+JSON.stringify(q),panel);
}
var search=document.getElementById('search');
search.addEventListener('change',function(){find(search.value);});
search.addEventListener('keydown',function(e){if(e.key==='Enter'){find(search.value);}});
document.querySelectorAll('tr[data-step]').forEach(function(tr){
  tr.addEventListener('click',function(){selectOp(+tr.getAttribute('data-step'));});
});
document.querySelectorAll('svg.timeline').forEach(function(svg){
  svg.setAttribute('data-hover','on');
  svg.addEventListener('mouseover',function(e){
    var t=e.target.querySelector&&e.target.querySelector('title');
    if(t){info.textContent=t.textContent;info.style.display='block';}
  });
  svg.addEventListener('mouseleave',function(){info.style.display='none';});
});
var asked=/^#(tensor|op|step)=(.*)$/.exec(location.hash);
if(asked){
  var name=decodeURIComponent(asked[2]);
  if(asked[1]==='step'){showStep(+name);}
  else if(asked[1]==='op'&&name in opIndex){selectOp(opIndex[name]);}
  else{find(name);}
  // A shared link lands on the chart of what it names.
  var chart=(document.querySelector('rect.sel')||document.querySelector('svg.plot')).closest('svg.timeline');
  if(chart){chart.scrollIntoView({block:'nearest'});}
}
apply();
})();
"""
